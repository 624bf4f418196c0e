"""Sentry, the certificate authority: file store, validators, gRPC CA, reload, monitoring.

Run it with the ``sentry`` command (:func:`pysentry.sentry.main.main`).
"""
