"""The seam between Sentry (and later the CLI) and the place that holds the CA credentials.

A :class:`CredentialStore` holds three items under Dapr's names, :data:`CA_FILENAME` (trust
anchors), :data:`ISSUER_CERT_FILENAME` (issuer chain) and :data:`ISSUER_KEY_FILENAME` (issuer key).
Its :meth:`~CredentialStore.state` is none, partial or complete. It loads and validates a complete
set, saves a generated set without ever overwriting anything, and streams change events that the
reloader consumes. The blocking methods run in a worker thread, never on the event loop.

Errors (on top of :mod:`pysentry.errors`)::

    InvalidBundle
    ├── IncompleteCredentials     none, or only some, of the three items exist
    └── CredentialsUnavailable    the store cannot be read now (permission, not a regular file,
                                  I/O error, too slow); the last good bundle keeps serving
    ConfigError
    └── StoreLocationError        the configured place cannot hold credentials (a path component
                                  that is a file); ``.blocker`` is that component
    PysentryError
    └── SaveFailed                a generated set could not be saved; the store is left as it was
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from pysentry.errors import ConfigError, InvalidBundle, PysentryError
from pysentry.pki.bundle import CaBundle

CA_FILENAME = "ca.crt"
ISSUER_CERT_FILENAME = "issuer.crt"
ISSUER_KEY_FILENAME = "issuer.key"
CREDENTIAL_FILENAMES = (CA_FILENAME, ISSUER_CERT_FILENAME, ISSUER_KEY_FILENAME)


class IncompleteCredentials(InvalidBundle):
    """None, or only some, of the three credential items exist."""


class CredentialsUnavailable(InvalidBundle):
    """The credentials cannot be read right now; nothing is known about their content."""


class StoreLocationError(ConfigError):
    """The configured location cannot hold credentials; ``blocker`` is the offending path."""

    def __init__(self, message: str, *, blocker: Path) -> None:
        super().__init__(message)
        self.blocker = blocker


class SaveFailed(PysentryError):
    """A generated bundle could not be saved; nothing of it is left in the store."""


class StoreState(enum.Enum):
    NONE = "none"
    PARTIAL = "partial"
    COMPLETE = "complete"


class StoreEvent(enum.Enum):
    WATCHING = "watching"
    """The watch is installed: anything changed since the last load must be looked at now."""
    CHANGED = "changed"
    """Something in the store changed (one event per batch)."""


@dataclass(frozen=True, slots=True)
class StoredCredentials:
    bundle: CaBundle
    version: Hashable
    """What :meth:`CredentialStore.version` returned just before the load."""


class CredentialStore(Protocol):
    @property
    def location(self) -> str:
        """Where the credentials are, for messages (a directory, a Secret name)."""
        ...

    def prepare(self) -> tuple[str, ...]:
        """Finish or roll back an interrupted save of this store's own, and remove the temp
        files it left; never touch what a user put there. Returns what was done, for the log."""
        ...

    def state(self) -> StoreState:
        """Which of the three items exist; :class:`CredentialsUnavailable` if that is unknown."""
        ...

    def version(self) -> Hashable:
        """A cheap token that changes whenever any of the three items changes."""
        ...

    def load(self, *, now: datetime) -> StoredCredentials:
        """Read and validate a complete set; every problem is an :class:`InvalidBundle`."""
        ...

    def save(self, bundle: CaBundle) -> None:
        """Persist a generated bundle, all or nothing; refuse if any item exists."""
        ...

    def changes(self) -> AsyncIterator[StoreEvent]:
        """:attr:`StoreEvent.WATCHING` once the watch is installed, then one
        :attr:`StoreEvent.CHANGED` per batch of changes, until cancelled. Raises
        :class:`OSError` when the watch cannot be installed."""
        ...
