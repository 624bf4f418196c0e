"""pysentry: Dapr's mutual-TLS system (Sentry CA, daprd sidecar, dapr CLI) in Python."""

__version__ = "0.1.0"
RUNTIME_VERSION = f"pysentry-{__version__}"
"""What daprd reports as its runtime version (metadata, HTTP and gRPC)."""
