"""Dapr's sidecar injector for pysentry: a mutating admission webhook that adds ``daprd``."""
