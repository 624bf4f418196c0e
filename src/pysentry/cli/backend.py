"""Where the CA credentials live: the seam between the ``mtls`` commands and a platform.

:class:`CredentialsBackend` reads and writes the three items Sentry uses, under the names of
:mod:`pysentry.credentials.base`. :class:`SelfHostedCredentials` is the directory Sentry is
started with (``--issuer-credentials``), seen through Sentry's own
:class:`~pysentry.credentials.FileStore`: its state (none, partial, complete) and a first
generated CA (:meth:`SelfHostedCredentials.save`, which never overwrites) are the store's. Two
things stay here on purpose: the strict reads (:mod:`pysentry.cli.pemfile`: every damaged block
is an error naming its file, where the store's load only says the bundle does not verify), and
:meth:`SelfHostedCredentials.write`, the one writer that *replaces* an existing bundle
(``renew-certificate``, ``init`` with given certificates, ``drop-old-roots``), which
``FileStore.save`` refuses by design; it stages every file first (:mod:`pysentry.cli.staging`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pysentry.cli.console import CliError
from pysentry.cli.pemfile import label_of, read_regular
from pysentry.cli.staging import write_files
from pysentry.credentials import (
    CA_FILENAME,
    ISSUER_CERT_FILENAME,
    ISSUER_KEY_FILENAME,
    CredentialPaths,
    CredentialsUnavailable,
    FileStore,
    SaveFailed,
    StoreLocationError,
    StoreState,
)
from pysentry.fileio import ensure_private_dir
from pysentry.pki.bundle import CaBundle


@dataclass(frozen=True, slots=True)
class Credentials:
    """The raw PEM contents of a CA bundle."""

    ca_pem: bytes
    issuer_pem: bytes
    key_pem: bytes


class CredentialsBackend(Protocol):
    """A place that holds Sentry's CA credentials."""

    @property
    def location(self) -> str:
        """Human-readable place, for messages (a directory, a Secret name)."""
        ...

    def state(self) -> StoreState:
        """None, some or all of the three items are present."""
        ...

    def read_anchors(self) -> bytes:
        """The trust bundle (``ca.crt``) alone."""
        ...

    def read(self) -> Credentials:
        """All three files; raises :class:`CliError` naming what is missing."""
        ...

    def write(self, credentials: Credentials) -> None:
        """Replace the credentials: all files staged first, then renamed in, anchors first."""
        ...


@dataclass(frozen=True, slots=True)
class SelfHostedCredentials:
    """A credentials directory on this machine (default ``~/.dapr/certs``)."""

    directory: Path

    @property
    def location(self) -> str:
        return str(self.directory)

    def path(self, name: str) -> Path:
        return self.directory / name

    @property
    def store(self) -> FileStore:
        """Sentry's file store for this directory (the same names, state and save)."""
        return FileStore(CredentialPaths.in_directory(self.directory))

    def state(self) -> StoreState:
        """Which of the three files exist (the store's rule); :class:`CliError` if unknown."""
        try:
            return self.store.state()
        except (CredentialsUnavailable, StoreLocationError) as err:
            raise CliError(f"{err}") from err

    def save(self, bundle: CaBundle) -> None:
        """A first CA, through the store: all three files or none, never over existing ones."""
        try:
            self.store.save(bundle)
        except (SaveFailed, StoreLocationError) as err:
            raise CliError(f"{err}") from err

    def has(self, name: str) -> bool:
        """True when ``name`` is there, readable or not (only a missing file gives False)."""
        try:
            os.lstat(self.path(name))
        except FileNotFoundError:
            return False
        except OSError:
            return True  # cannot tell: reading it reports why
        return True

    def label(self, name: str) -> str:
        """``ca.crt '/abs/dir/ca.crt'``: how messages name one of the files."""
        return label_of(self.path(name), name)

    def read_file(self, name: str) -> bytes:
        """One of the files; :class:`CliError` naming it when missing or unreadable."""
        path = self.path(name)
        if not self.has(name):
            raise CliError(
                f"{self.label(name)}: file does not exist; start Sentry with "
                f"--issuer-credentials {self.directory} to create a CA there, or run "
                "'dapr mtls renew-certificate' to generate one"
            )
        return read_regular(path, self.label(name))

    def read_anchors(self) -> bytes:
        return self.read_file(CA_FILENAME)

    def read(self) -> Credentials:
        return Credentials(
            ca_pem=self.read_file(CA_FILENAME),
            issuer_pem=self.read_file(ISSUER_CERT_FILENAME),
            key_pem=self.read_file(ISSUER_KEY_FILENAME),
        )

    def write(self, credentials: Credentials) -> None:
        # Every file is staged (written and fsynced) before any is replaced, so a full disk or an
        # unwritable directory changes nothing. Then anchors first: a watcher that reloads between
        # two renames sees a wider trust bundle, never an issuer its anchors do not know yet.
        # Sentry debounces the directory.
        ensure_private_dir(self.directory)
        write_files(
            self.directory,
            (
                (CA_FILENAME, credentials.ca_pem),
                (ISSUER_KEY_FILENAME, credentials.key_pem),
                (ISSUER_CERT_FILENAME, credentials.issuer_pem),
            ),
        )

    def write_anchors(self, ca_pem: bytes) -> None:
        """Replace ``ca.crt`` alone (the issuer files are left as they are)."""
        write_files(self.directory, ((CA_FILENAME, ca_pem),))


def self_hosted(directory: Path | None, default: Path) -> SelfHostedCredentials:
    """The backend for ``--issuer-credentials DIR`` (or the default ``~/.dapr/certs``)."""
    return SelfHostedCredentials((directory or default).expanduser().absolute())
