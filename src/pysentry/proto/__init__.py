"""Generated protobuf and grpclib stubs for Dapr's wire protocol (``make proto`` regenerates).

Modules live under ``pysentry.proto.dapr.proto...``; the protobuf packages and registered file
names are Dapr's own (``dapr.proto.sentry.v1``, ``dapr/proto/sentry/v1/sentry.proto``).
"""
