"""The file implementation of :class:`~pysentry.credentials.base.CredentialStore` (spec §5.3).

Three files, by default in one directory: ``ca.crt``, ``issuer.crt``, ``issuer.key``.

- none exists: a generated bundle may be :meth:`FileStore.save`d: directories created 0700, all
  three files created crash-atomically (:mod:`pysentry.credentials.journal`), mode 0600;
- all exist: :meth:`FileStore.load` reads them (regular files only, bounded size) and validates
  them with ``CaBundle.from_pem`` (spec §5.2);
- some exist: :class:`IncompleteCredentials`, naming the missing files. Unlike Dapr
  (dapr/dapr#9563, dapr/cli#1448), nothing ever writes over a user's CA.

Directories are watched rather than files, so symlink-swapped Kubernetes secrets are seen.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from pysentry.credentials import journal
from pysentry.credentials.base import (
    CA_FILENAME,
    ISSUER_CERT_FILENAME,
    ISSUER_KEY_FILENAME,
    CredentialsUnavailable,
    IncompleteCredentials,
    SaveFailed,
    StoredCredentials,
    StoreEvent,
    StoreLocationError,
    StoreState,
)
from pysentry.credentials.history import RootHistory
from pysentry.errors import InvalidBundle
from pysentry.fileio import ensure_private_dir, read_file, remove_created_dirs, remove_stale_temps
from pysentry.pki.bundle import CaBundle
from pysentry.watch import WatchEvent, directory_changes

log = logging.getLogger(__name__)

Fingerprint = tuple[tuple[int, int, int, int] | None, ...]
"""(device, inode, size, mtime_ns) of each credential file, None for a missing one."""
_WATCH_DEBOUNCE = timedelta(milliseconds=5)  # kit's fswatcher batches per-file events for 5 ms


@dataclass(frozen=True, slots=True)
class CredentialPaths:
    ca: Path
    issuer_cert: Path
    issuer_key: Path

    @classmethod
    def in_directory(cls, directory: Path) -> CredentialPaths:
        """Dapr's three file names in ``directory``."""
        names = (CA_FILENAME, ISSUER_CERT_FILENAME, ISSUER_KEY_FILENAME)
        return cls(*(directory / name for name in names))

    def all(self) -> tuple[Path, Path, Path]:
        return (self.ca, self.issuer_cert, self.issuer_key)

    def directories(self) -> tuple[Path, ...]:
        """Parent directories to watch, deduplicated, in order."""
        return tuple(dict.fromkeys(p.parent for p in self.all()))


def _not_a_directory(directory: Path, blocker: Path | None = None) -> StoreLocationError:
    """The error for ``directory`` when it, or one of its parents, is not a directory."""
    if blocker is None:
        blocker = directory
        for probe in (directory, *directory.parents):
            if os.path.lexists(probe) and not probe.is_dir():
                blocker = probe
                break
    what = "is not a directory" if blocker == directory else f"{str(blocker)!r} is not a directory"
    return StoreLocationError(f"credentials directory {str(directory)!r}: {what}", blocker=blocker)


@dataclass(frozen=True, slots=True)
class FileStore:
    paths: CredentialPaths

    @property
    def location(self) -> str:
        dirs = self.paths.directories()
        return ", ".join(repr(str(d)) for d in dirs)

    @property
    def _journal(self) -> Path:
        return self.paths.ca.parent / journal.JOURNAL_NAME

    # --- reading -----------------------------------------------------------------------------

    def _stat(self, path: Path) -> os.stat_result | None:
        try:
            return os.stat(path)
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            raise _not_a_directory(path.parent) from None
        except PermissionError as err:
            raise CredentialsUnavailable(
                f"cannot look up {str(path)!r}: permission denied; give the user Sentry runs as "
                "read and search access to the credentials directory"
            ) from err
        except OSError as err:
            raise CredentialsUnavailable(
                f"cannot look up {str(path)!r}: {err.strerror or err}"
            ) from err

    def version(self) -> Fingerprint:
        """(device, inode, size, mtime) of each file, None when missing or unknown."""
        out: list[tuple[int, int, int, int] | None] = []
        for path in self.paths.all():
            try:
                st = os.stat(path)
            except OSError:
                out.append(None)
                continue
            out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(out)

    def missing(self) -> tuple[Path, ...]:
        return tuple(p for p in self.paths.all() if self._stat(p) is None)

    def state(self) -> StoreState:
        missing = self.missing()
        if not missing:
            return StoreState.COMPLETE
        return StoreState.NONE if len(missing) == len(self.paths.all()) else StoreState.PARTIAL

    def _incomplete(self, missing: tuple[Path, ...]) -> IncompleteCredentials:
        present = [p for p in self.paths.all() if p not in missing]
        return IncompleteCredentials(
            "incomplete issuer credentials: found "
            + ", ".join(repr(str(p)) for p in present)
            + " but missing "
            + ", ".join(repr(str(p)) for p in missing)
            + "; restore the missing files from your CA, or, to let Sentry generate a new "
            "self-signed CA, remove all three files (workloads will then need the new trust "
            "anchors)"
        )

    def check_complete(self) -> bool:
        """True if all three files exist, False if none does; raise if only some do."""
        missing = self.missing()
        if missing and len(missing) < len(self.paths.all()):
            raise self._incomplete(missing)
        return not missing

    def load(self, *, now: datetime) -> StoredCredentials:
        """Read and validate the three files; every problem is an :class:`InvalidBundle`."""
        version = self.version()
        try:
            complete = self.check_complete()
        except StoreLocationError as err:  # a directory replaced by a file while running
            raise CredentialsUnavailable(str(err)) from err
        if not complete:
            raise IncompleteCredentials(
                "issuer credentials not found: "
                + ", ".join(repr(str(p)) for p in self.paths.all())
                + " do not exist"
            )
        ca_pem = read_file(self.paths.ca, "trust anchors", error=CredentialsUnavailable)
        issuer_pem = read_file(
            self.paths.issuer_cert, "issuer certificate", error=CredentialsUnavailable
        )
        key_pem = read_file(self.paths.issuer_key, "issuer key", error=CredentialsUnavailable)
        try:
            bundle = CaBundle.from_pem(ca_pem, issuer_pem, key_pem, now=now)
        except ValueError as err:  # InvalidBundle included
            raise InvalidBundle(f"failed to verify CA bundle: {err}") from err
        if self.history.path.exists():  # only where Sentry generated the CA: never a user's dir
            self.history.remember(bundle.trust_anchors)
        return StoredCredentials(bundle, version)

    @property
    def history(self) -> RootHistory:
        """The roots last loaded from this store (kept by a regenerated CA)."""
        return RootHistory(self.paths.ca.parent)

    # --- writing -----------------------------------------------------------------------------

    def prepare(self) -> tuple[str, ...]:
        """Finish or roll back our own interrupted generation; remove our stale temp files."""
        for path in self.paths.all():
            self._stat(path)  # a path through a file is a clear error, not ENOTDIR later
        if not self._journal.parent.is_dir():
            return ()
        try:
            with journal.locked(self._journal.parent):
                return self._recover()
        except OSError as err:
            raise SaveFailed(
                f"cannot clean up an interrupted CA generation in {self.location}: "
                f"{err.strerror or err}; fix the directory's permissions or free space"
            ) from err

    def _recover(self) -> tuple[str, ...]:
        notes: list[str] = []
        done = journal.recover(self._journal, self.paths.all())
        if done is not None:
            notes.append(f"{done} in {self.location}")
        for target in (*self.paths.all(), self._journal, self.history.path):
            for stale in remove_stale_temps(target):
                notes.append(f"removed stale temp file {str(stale)!r}")
        return tuple(notes)

    def save(self, bundle: CaBundle) -> None:
        """Persist a generated bundle, all three files or none; refuse if any file exists.

        Raises :class:`SaveFailed` (directories left as found) or :class:`InvalidBundle`.
        """
        created: tuple[Path, ...] = ()
        try:
            for directory in self.paths.directories():
                created += ensure_private_dir(directory)
            with journal.locked(self._journal.parent):
                self._recover()
                existing = [p for p in self.paths.all() if self._stat(p) is not None]
                if existing:
                    raise InvalidBundle(
                        "refusing to overwrite existing issuer credentials: "
                        + ", ".join(repr(str(p)) for p in existing)
                    )
                journal.create_all(
                    self._journal,
                    (
                        (self.paths.issuer_key, bundle.issuer_key_pem()),
                        (self.paths.issuer_cert, bundle.issuer_chain_pem()),
                        (self.paths.ca, bundle.anchors_pem()),
                    ),
                )
        except NotADirectoryError as err:  # from ensure_private_dir: a file in the way
            remove_created_dirs(created)
            blocker = Path(err.filename) if err.filename else None
            raise _not_a_directory(self.paths.ca.parent, blocker) from err
        except OSError as err:
            remove_created_dirs(created)
            raise SaveFailed(
                f"failed to save the generated CA in {self.location}: "
                f"{err.strerror or err}; nothing was written: " + _save_hint(err)
            ) from err
        except BaseException:
            remove_created_dirs(created)
            raise

    # --- watching ----------------------------------------------------------------------------

    async def changes(self) -> AsyncIterator[StoreEvent]:
        directories = self.paths.directories()
        log.info(
            "Starting watch on filesystem directories: [%s]", " ".join(str(d) for d in directories)
        )
        async for event in directory_changes(
            self.paths.directories(), debounce=_WATCH_DEBOUNCE, step=_WATCH_DEBOUNCE
        ):
            yield StoreEvent.WATCHING if event is WatchEvent.READY else StoreEvent.CHANGED


def _save_hint(err: OSError) -> str:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free some space and start Sentry again"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "let the user Sentry runs as write to the directory, or provide the CA files"
    return "fix the cause and start Sentry again"
