"""The errors pysentry raises on purpose, in one hierarchy.

::

    PysentryError
    ├── InvalidSpiffeId (ValueError)   a SPIFFE ID or trust domain that breaks the rules
    ├── InvalidKey (ValueError)        a key that cannot be loaded or is not supported
    ├── InvalidCsr (ValueError)        a CSR that does not parse or verify -> INVALID_ARGUMENT
    ├── InvalidBundle (ValueError)     CA credentials that do not validate
    ├── InvalidDuration (ValueError)   a Go duration string that does not parse
    ├── InvalidMethod (ValueError)     a method name with forbidden characters -> INVALID_ARGUMENT
    ├── RequestDenied                  a validator refused -> PERMISSION_DENIED (.problems)
    ├── PeerRejected                   a peer's chain or SPIFFE ID is not accepted
    ├── SentryUnavailable              the sidecar could not get an identity from Sentry
    └── ConfigError                    a configuration file or flag that is wrong (CLI exit code 2)

Messages have the form ``<what>: <why>``. Keys, tokens and PEM bodies never appear in them.
"""

from __future__ import annotations


class PysentryError(Exception):
    """Base for every error pysentry raises on purpose."""


class InvalidSpiffeId(PysentryError, ValueError):
    """A SPIFFE ID or trust domain that is not valid."""


class InvalidKey(PysentryError, ValueError):
    """A private or public key that cannot be loaded or is not supported."""


class InvalidCsr(PysentryError, ValueError):
    """A certificate signing request that cannot be accepted (gRPC INVALID_ARGUMENT)."""


class InvalidBundle(PysentryError, ValueError):
    """CA credentials (trust anchors, issuer chain, issuer key) that do not validate."""


class InvalidDuration(PysentryError, ValueError):
    """A Go-style duration string that does not parse."""


class InvalidMethod(PysentryError, ValueError):
    """A service-invocation method name that cannot be normalized (gRPC INVALID_ARGUMENT)."""


class RequestDenied(PysentryError):
    """A validator refused a signing request (gRPC PERMISSION_DENIED).

    ``problems`` holds every individual reason; ``str(err)`` joins them the way Dapr's
    ``errors.Join`` does (newline separated), behind an optional prefix.
    """

    def __init__(self, *problems: str, prefix: str = "") -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__(prefix + "\n".join(problems))


class PeerRejected(PysentryError):
    """A peer's certificate chain or SPIFFE ID is not accepted."""


class SentryUnavailable(PysentryError):
    """An identity could not be obtained from Sentry."""


class ConfigError(PysentryError):
    """A configuration file or flag that is wrong. The CLIs exit with code 2."""
