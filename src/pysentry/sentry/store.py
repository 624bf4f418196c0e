"""The standalone (file) store for Sentry's CA credentials (spec §5.3, anchors.md §4).

Three files: trust anchors (``ca.crt``), issuer chain (``issuer.crt``), issuer key (``issuer.key``).

- none exists: the caller may generate a CA and :meth:`FileStore.save` it (directory created 0700
  when missing, files written atomically with mode 0600);
- all exist: :meth:`FileStore.load` validates them with ``CaBundle.from_pem`` (spec §5.2);
- some exist: :class:`IncompleteCredentials`, naming the missing files. Sentry never writes over a
  user's CA, unlike Dapr (dapr/dapr#9563, dapr/cli#1448).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pysentry.errors import InvalidBundle
from pysentry.fileio import ensure_private_dir, write_atomic
from pysentry.pki.bundle import CaBundle

Fingerprint = tuple[tuple[int, int, int] | None, ...]
"""(inode, size, mtime_ns) of each credential file, None for a missing one."""


class IncompleteCredentials(InvalidBundle):
    """Some but not all of the three credential files exist."""


@dataclass(frozen=True, slots=True)
class CredentialPaths:
    ca: Path
    issuer_cert: Path
    issuer_key: Path

    def all(self) -> tuple[Path, Path, Path]:
        return (self.ca, self.issuer_cert, self.issuer_key)

    def directories(self) -> tuple[Path, ...]:
        """Parent directories to watch, deduplicated, in order."""
        return tuple(dict.fromkeys(p.parent for p in self.all()))


@dataclass(frozen=True, slots=True)
class FileStore:
    paths: CredentialPaths

    def fingerprint(self) -> Fingerprint:
        """(inode, size, mtime) of each file, None when missing: tells whether anything changed."""
        out: list[tuple[int, int, int] | None] = []
        for path in self.paths.all():
            try:
                st = path.stat()
            except OSError:
                out.append(None)
                continue
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(out)

    def missing(self) -> tuple[Path, ...]:
        return tuple(p for p in self.paths.all() if not p.exists())

    def check_complete(self) -> bool:
        """True if all three files exist, False if none does; raise if only some do."""
        missing = self.missing()
        if not missing:
            return True
        if len(missing) == len(self.paths.all()):
            return False
        present = [p for p in self.paths.all() if p not in missing]
        raise IncompleteCredentials(
            "incomplete issuer credentials: found "
            + ", ".join(repr(str(p)) for p in present)
            + " but missing "
            + ", ".join(repr(str(p)) for p in missing)
            + "; restore the missing files from your CA, or, to let Sentry generate a new "
            "self-signed CA, remove all three files (workloads will then need the new trust "
            "anchors)"
        )

    def _read(self, path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as err:
            raise InvalidBundle(f"failed to read {str(path)!r}: {err.strerror or err}") from err

    def load(self, *, now: datetime) -> CaBundle:
        """Load and validate the three files; every problem is an :class:`InvalidBundle`."""
        if not self.check_complete():
            raise IncompleteCredentials(
                "issuer credentials not found: "
                + ", ".join(repr(str(p)) for p in self.paths.all())
                + " do not exist"
            )
        ca_pem = self._read(self.paths.ca)
        issuer_pem = self._read(self.paths.issuer_cert)
        key_pem = self._read(self.paths.issuer_key)
        try:
            return CaBundle.from_pem(ca_pem, issuer_pem, key_pem, now=now)
        except ValueError as err:  # InvalidBundle included
            raise InvalidBundle(f"failed to verify CA bundle: {err}") from err

    def save(self, bundle: CaBundle) -> None:
        """Persist a generated bundle: 0700 directories, 0600 files, atomic writes.

        Refuses if any of the files exists (never overwrite credentials on disk).
        """
        existing = [p for p in self.paths.all() if p.exists()]
        if existing:
            raise InvalidBundle(
                "refusing to overwrite existing issuer credentials: "
                + ", ".join(repr(str(p)) for p in existing)
            )
        for directory in self.paths.directories():
            ensure_private_dir(directory)
        write_atomic(self.paths.issuer_key, bundle.issuer_key_pem(), mode=0o600)
        write_atomic(self.paths.issuer_cert, bundle.issuer_chain_pem(), mode=0o600)
        write_atomic(self.paths.ca, bundle.anchors_pem(), mode=0o600)
