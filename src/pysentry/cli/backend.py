"""Where the CA credentials live: the seam between the ``mtls`` commands and a platform.

:class:`CredentialsBackend` reads and writes the three files Sentry uses (``ca.crt``,
``issuer.crt``, ``issuer.key``). :class:`SelfHostedCredentials` is the directory Sentry is
started with (``--issuer-credentials``); a Kubernetes backend (the ``dapr-trust-bundle``
Secret) can implement the same protocol later.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pysentry.cli.console import CliError
from pysentry.fileio import ensure_private_dir, write_atomic

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
        """Replace the credentials; each file is written atomically, anchors first."""
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

    def _read(self, name: str) -> bytes:
        path = self.path(name)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise CliError(
                f"credentials file {str(path)!r} not found: start Sentry with "
                f"--issuer-credentials {self.directory} to create a CA there, or run "
                "'dapr mtls renew-certificate' to generate one"
            ) from None
        except OSError as err:
            raise CliError(f"cannot read credentials file {str(path)!r}: {err.strerror}") from err

    def read_anchors(self) -> bytes:
        return self._read(CA_FILE)

    def read(self) -> Credentials:
        return Credentials(
            ca_pem=self._read(CA_FILE),
            issuer_pem=self._read(ISSUER_CERT_FILE),
            key_pem=self._read(ISSUER_KEY_FILE),
        )

    def write(self, credentials: Credentials) -> None:
        # Anchors first: a watcher that reloads between two writes sees a wider trust bundle,
        # never an issuer that its anchors do not know yet. Sentry debounces the directory.
        ensure_private_dir(self.directory)
        write_atomic(self.path(CA_FILE), credentials.ca_pem, mode=0o600)
        write_atomic(self.path(ISSUER_KEY_FILE), credentials.key_pem, mode=0o600)
        write_atomic(self.path(ISSUER_CERT_FILE), credentials.issuer_pem, mode=0o600)


def self_hosted(directory: Path | None, default: Path) -> SelfHostedCredentials:
    """The backend for ``--issuer-credentials DIR`` (or the default ``~/.dapr/certs``)."""
    return SelfHostedCredentials((directory or default).expanduser().absolute())
