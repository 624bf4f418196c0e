"""pysentry: Dapr's mutual-TLS system (Sentry CA, daprd sidecar, dapr CLI) in Python."""

__version__ = "0.1.0"
