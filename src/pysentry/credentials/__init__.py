"""Where the CA credentials live: the :class:`CredentialStore` seam and its file implementation.

Used by Sentry (load, generate on first start, hot reload); the CLI is to move onto it. Layering:
this package builds on ``pki``, ``config``, ``fileio``, ``watch`` and ``errors``, and never imports
``sentry``, ``sidecar`` or ``cli``.
"""

from pysentry.credentials.base import (
    CA_FILENAME,
    CREDENTIAL_FILENAMES,
    ISSUER_CERT_FILENAME,
    ISSUER_KEY_FILENAME,
    CredentialStore,
    CredentialsUnavailable,
    IncompleteCredentials,
    SaveFailed,
    StoredCredentials,
    StoreEvent,
    StoreLocationError,
    StoreState,
)
from pysentry.credentials.files import CredentialPaths, FileStore

__all__ = [
    "CA_FILENAME",
    "CREDENTIAL_FILENAMES",
    "ISSUER_CERT_FILENAME",
    "ISSUER_KEY_FILENAME",
    "CredentialPaths",
    "CredentialStore",
    "CredentialsUnavailable",
    "FileStore",
    "IncompleteCredentials",
    "SaveFailed",
    "StoreEvent",
    "StoreLocationError",
    "StoreState",
    "StoredCredentials",
]
