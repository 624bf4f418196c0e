"""Where the CA credentials live: the seam between the ``mtls`` commands and a platform.

:class:`CredentialsBackend` reads and writes the three files Sentry uses (``ca.crt``,
``issuer.crt``, ``issuer.key``). :class:`SelfHostedCredentials` is the directory Sentry is
started with (``--issuer-credentials``); a Kubernetes backend (the ``dapr-trust-bundle``
Secret) can implement the same protocol later.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pysentry.cli.console import CliError
from pysentry.cli.pemfile import label_of, read_regular
from pysentry.cli.staging import make_private_dirs, write_files

CA_FILE = "ca.crt"
ISSUER_CERT_FILE = "issuer.crt"
ISSUER_KEY_FILE = "issuer.key"
CREDENTIAL_FILES = (CA_FILE, ISSUER_CERT_FILE, ISSUER_KEY_FILE)


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

    def exists(self) -> bool:
        """True when all three credential files are present."""
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

    def exists(self) -> bool:
        return all(self.path(name).is_file() for name in CREDENTIAL_FILES)

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
        return self.read_file(CA_FILE)

    def read(self) -> Credentials:
        return Credentials(
            ca_pem=self.read_file(CA_FILE),
            issuer_pem=self.read_file(ISSUER_CERT_FILE),
            key_pem=self.read_file(ISSUER_KEY_FILE),
        )

    def write(self, credentials: Credentials) -> None:
        # Every file is staged (written and fsynced) before any is replaced, so a full disk or an
        # unwritable directory changes nothing. Then anchors first: a watcher that reloads between
        # two renames sees a wider trust bundle, never an issuer its anchors do not know yet.
        # Sentry debounces the directory.
        make_private_dirs(self.directory)
        write_files(
            self.directory,
            (
                (CA_FILE, credentials.ca_pem),
                (ISSUER_KEY_FILE, credentials.key_pem),
                (ISSUER_CERT_FILE, credentials.issuer_pem),
            ),
        )

    def write_anchors(self, ca_pem: bytes) -> None:
        """Replace ``ca.crt`` alone (the issuer files are left as they are)."""
        write_files(self.directory, ((CA_FILE, ca_pem),))


def self_hosted(directory: Path | None, default: Path) -> SelfHostedCredentials:
    """The backend for ``--issuer-credentials DIR`` (or the default ``~/.dapr/certs``)."""
    return SelfHostedCredentials((directory or default).expanduser().absolute())
