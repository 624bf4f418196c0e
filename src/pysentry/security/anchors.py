"""Trust anchor sources: the set of root certificates peers must chain to.

- :class:`StaticAnchors`: from ``DAPR_TRUST_ANCHORS`` (as daprd), never reloaded.
- :class:`FileAnchors`: from a PEM file, watched and hot-reloaded. It watches the *directory*
  (editors and ``kubectl`` replace files by rename or symlink swap) and re-reads the file on any
  event there, reloading only if its bytes changed. A broken file keeps the last good bundle, logs
  the reason and sets :attr:`FileAnchors.last_error`. Subscribers are called with the new anchors.

Both are read strictly (:func:`pysentry.pki.pem.strict_certificates`): where Go's decoder skips a
cut or corrupt block, so a damaged bundle would silently trust fewer roots, here it is an error
naming the source (``DAPR_TRUST_ANCHORS`` or the file), the block and the fix.

A bundle may hold several roots, which is how a root is replaced without downtime. As in Dapr,
one anchor set serves every trust domain.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cryptography import x509

from pysentry.errors import ConfigError, InvalidBundle
from pysentry.fileio import read_file
from pysentry.pki.pem import PemError, PemProblem, dump_certificates, strict_certificates

if TYPE_CHECKING:  # daprd reads its anchors before it imports asyncio (first identity)
    import asyncio

log = logging.getLogger(__name__)

Anchors = tuple[x509.Certificate, ...]
AnchorsCallback = Callable[[Anchors], None]
TRUST_ANCHORS_ENV = "DAPR_TRUST_ANCHORS"
_WATCH_DEBOUNCE = timedelta(milliseconds=1600)
_WATCH_STEP = timedelta(milliseconds=50)


class TrustAnchors(Protocol):
    """A source of the current trust anchors."""

    def current(self) -> Anchors: ...

    def pem(self) -> bytes: ...

    def subscribe(self, callback: AnchorsCallback) -> Callable[[], None]: ...


def parse_anchors(pem: bytes, source: str, *, what: str = "file") -> Anchors:
    """Every certificate of ``pem``, read strictly; ``InvalidBundle`` naming ``source`` if none
    or if any block is damaged (Go's decoder would skip it and trust fewer roots)."""
    try:
        return strict_certificates(pem, what)
    except PemError as err:
        fix = err.fix
        if err.kind in (PemProblem.EMPTY, PemProblem.NO_CERTIFICATE):
            fix = "expected the CA certificate(s), e.g. the contents of ca.crt"
        elif err.kind is PemProblem.DAMAGED and what == "value":
            fix = f"set {source} to the complete CA bundle (ca.crt) again, keeping its newlines"
        elif err.kind is PemProblem.DAMAGED:
            fix = "copy the complete CA bundle (ca.crt) into it again"
        raise InvalidBundle(f"invalid trust anchors in {source}: {err.problem}; {fix}") from err


class _Subscribers:
    def __init__(self) -> None:
        self._callbacks: list[AnchorsCallback] = []

    def add(self, callback: AnchorsCallback) -> Callable[[], None]:
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return unsubscribe

    def notify(self, anchors: Anchors) -> None:
        for callback in list(self._callbacks):
            try:
                callback(anchors)
            except Exception:
                log.exception("Trust anchors subscriber %r failed", callback)


class StaticAnchors:
    """Anchors fixed at start (``DAPR_TRUST_ANCHORS``)."""

    def __init__(self, anchors: Anchors) -> None:
        if not anchors:
            raise InvalidBundle("invalid trust anchors: the bundle is empty")
        self._anchors = tuple(anchors)
        self._pem = dump_certificates(self._anchors)

    @classmethod
    def from_pem(cls, pem: bytes | str, *, source: str = TRUST_ANCHORS_ENV) -> StaticAnchors:
        data = pem.encode() if isinstance(pem, str) else pem
        return cls(parse_anchors(data, source, what="value"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> StaticAnchors | None:
        """From ``DAPR_TRUST_ANCHORS``; ``None`` when it is unset or empty."""
        value = environ.get(TRUST_ANCHORS_ENV, "")
        return cls.from_pem(value) if value.strip() else None

    def current(self) -> Anchors:
        return self._anchors

    def pem(self) -> bytes:
        return self._pem

    def subscribe(self, callback: AnchorsCallback) -> Callable[[], None]:
        return lambda: None  # never changes


class FileAnchors:
    """Anchors read from ``path`` and reloaded when it changes (run :meth:`run` in a task).

    The constructor reads the file: a missing or broken file at start is an error.
    """

    def __init__(self, path: Path | str, *, force_polling: bool | None = None) -> None:
        self.path = Path(path)
        self.force_polling = force_polling
        self.last_error: str | None = None
        self.reloads = 0
        self._subscribers = _Subscribers()
        self._ready_event: asyncio.Event | None = None
        self._raw = self._read()
        self._anchors = parse_anchors(self._raw, f"file {str(self.path)!r}")
        self._pem = dump_certificates(self._anchors)

    def _read(self) -> bytes:
        """The file's bytes; a FIFO, device or directory is refused without blocking."""
        try:
            return read_file(self.path, "trust anchors file")
        except ConfigError as err:
            if isinstance(err.__cause__, FileNotFoundError):
                raise ConfigError(
                    f"trust anchors file {str(self.path)!r} not found: "
                    "give the path of the CA certificate bundle (ca.crt)"
                ) from None
            raise

    def current(self) -> Anchors:
        return self._anchors

    def pem(self) -> bytes:
        return self._pem

    def subscribe(self, callback: AnchorsCallback) -> Callable[[], None]:
        return self._subscribers.add(callback)

    @property
    def _ready(self) -> asyncio.Event:
        if self._ready_event is None:
            import asyncio

            self._ready_event = asyncio.Event()
        return self._ready_event

    async def wait_ready(self) -> None:
        """Return once the watcher is installed (changes after this are seen)."""
        await self._ready.wait()

    def reload(self) -> bool:
        """Re-read the file now; True if new anchors were installed. Keeps the old on error."""
        try:
            raw = self._read()
            if raw == self._raw:
                return False
            anchors = parse_anchors(raw, f"file {str(self.path)!r}")
        except (ConfigError, InvalidBundle) as err:
            if str(err) != self.last_error:
                log.error("Failed to reload trust anchors, keeping the previous ones: %s", err)
            self.last_error = str(err)
            return False
        self._raw = raw
        self.last_error = None
        if anchors == self._anchors:
            return False
        self._anchors = anchors
        self._pem = dump_certificates(anchors)
        self.reloads += 1
        log.info(
            "Trust anchors file changed, reloading trust anchors from %r (%d certificates)",
            str(self.path),
            len(anchors),
        )
        self._subscribers.notify(anchors)
        return True

    async def run(self) -> None:
        """Watch the file's directory until cancelled."""
        from pysentry.watch import watch_directories

        await watch_directories(
            (self.path.parent,),
            self.reload,
            on_ready=self._watching,
            debounce=_WATCH_DEBOUNCE,
            step=_WATCH_STEP,
            force_polling=self.force_polling,
        )

    def _watching(self) -> None:
        self.reload()  # a change between the first read and the watch start
        self._ready.set()
        log.debug("Watching trust anchors file %r", str(self.path))
