"""Hot reload of the issuer credentials (spec §8.1), without restarting the gRPC server.

The store's change stream drives it. On the first event: count ``issuercert_changed_total``,
wait a quiet period (Dapr's 2 s) to batch further events, log ``Issuer credentials changed;
reloading`` and load the credentials. A valid bundle replaces the old one and Sentry's serving
SVID is re-issued from it. Anything else (invalid, incomplete, unreadable, not a regular file,
too slow to read) is rejected: the last good bundle keeps serving, and the reason goes to the
log, to ``dapr_sentry_issuercert_reload_failed_total`` and to the ``/healthz`` detail. While the
credentials are unusable they are re-read every few quiet periods, so Sentry recovers by itself
(a repeat of the same reason is not logged or counted again). Nothing is ever generated during a
reload.

Reads run in a worker thread with a time limit, so a hung filesystem never stalls signing or
``/healthz``; at most one read is in flight (a read still stuck is reported, not piled on).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Hashable
from datetime import timedelta
from typing import Any, TypeVar

from pysentry.clock import Clock, system_clock
from pysentry.credentials import CredentialStore, CredentialsUnavailable, StoreEvent
from pysentry.errors import InvalidBundle
from pysentry.sentry.ca import CertificateAuthority
from pysentry.sentry.monitoring import Health, SentryMetrics

log = logging.getLogger(__name__)

HEALTH_DETAIL = "issuer-credentials"
WATCH_HEALTH_DETAIL = "issuer-credentials-watch"
READ_TIMEOUT = timedelta(seconds=5)
RETRY_QUIET_PERIODS = 5
MIN_RETRY_INTERVAL = timedelta(seconds=1)
T = TypeVar("T")


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # a read we stopped waiting for: its outcome is not reported again


def _in_daemon_thread(read: Callable[[], T]) -> asyncio.Future[T]:
    """``read()`` in a daemon thread of its own: one stuck on a hung filesystem never holds up
    the executor other code uses, nor Sentry's exit (asyncio joins its executor's threads)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(result)  # type: ignore[arg-type]
        else:
            future.set_exception(error)

    def run() -> None:
        try:
            result, error = read(), None
        except BaseException as err:
            result, error = None, err
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="credentials-read", daemon=True).start()
    return future


class CredentialsReloader:
    def __init__(
        self,
        store: CredentialStore,
        ca: CertificateAuthority,
        *,
        on_swap: Callable[[], Awaitable[object]],
        metrics: SentryMetrics | None,
        health: Health | None,
        quiet_period: timedelta,
        loaded_version: Hashable,
        clock: Clock = system_clock,
        read_timeout: timedelta = READ_TIMEOUT,
        retry_interval: timedelta | None = None,
    ) -> None:
        self._store = store
        self._ca = ca
        self._on_swap = on_swap
        self._metrics = metrics
        self._health = health
        self._quiet_period = quiet_period
        self._clock = clock
        self._read_timeout = read_timeout
        self._retry_interval = retry_interval or max(
            quiet_period * RETRY_QUIET_PERIODS, MIN_RETRY_INTERVAL
        )
        self._pending = asyncio.Event()
        self._ready = asyncio.Event()
        self._loaded_version = loaded_version
        self._inflight: asyncio.Future[object] | None = None
        self.failure: str | None = None
        """Why the last reload was rejected; None once one succeeds."""

    async def _off_loop(self, read: Callable[[], T], what: str) -> T:
        """``read()`` in a worker thread, waited for at most the read timeout."""
        limit = self._read_timeout.total_seconds()
        previous = self._inflight
        # asyncio.wait, not wait_for: it never cancels the read, and on Python 3.11 wait_for
        # can swallow a cancellation that comes as the read ends.
        if previous is not None and not previous.done():
            await asyncio.wait((previous,), timeout=limit)
            if not previous.done():
                raise CredentialsUnavailable(
                    f"{what} from {self._store.location}: an earlier read has been blocked for "
                    f"over {limit:g}s (a hung filesystem?); still serving the previous CA"
                )
        future = _in_daemon_thread(read)
        future.add_done_callback(_retrieve)
        self._inflight = future  # type: ignore[assignment]
        await asyncio.wait((future,), timeout=limit)
        if not future.done():
            raise CredentialsUnavailable(
                f"{what} from {self._store.location}: did not finish within {limit:g}s "
                "(a hung filesystem?)"
            )
        return future.result()

    async def reload(self, *, retry: bool = False) -> bool:
        """Load now; swap if valid. Returns whether the new bundle is in use. ``retry``: a
        periodic re-read while failing (a repeat of the same reason is not reported again)."""
        try:
            loaded = await self._off_loop(
                lambda: self._store.load(now=self._clock()), "reading the issuer credentials"
            )
        except InvalidBundle as err:
            self._rejected(str(err), repeat_is_quiet=retry)
            return False
        except Exception as err:  # a bug must not take the CA down: keep serving, report it
            log.error("Issuer credentials reload failed unexpectedly", exc_info=True)
            self._rejected(f"unexpected error: {type(err).__name__}", repeat_is_quiet=retry)
            return False
        self._ca.swap(loaded.bundle)
        self._loaded_version = loaded.version
        if self.failure is not None:
            log.info("Issuer credentials usable again")
        self.failure = None
        if self._metrics is not None:
            self._metrics.ca_loaded(
                issuer_not_after=loaded.bundle.issuer_not_after,
                root_not_after=loaded.bundle.root_not_after,
            )
        if self._health is not None:
            self._health.set_detail(HEALTH_DETAIL, None)
        log.info("CA certificate key pair ready")
        try:
            await self._on_swap()
        except Exception:
            log.error("Failed to re-issue the serving certificate after a reload", exc_info=True)
        return True

    def _rejected(self, reason: str, *, repeat_is_quiet: bool) -> None:
        repeat = reason == self.failure
        self.failure = reason
        if repeat and repeat_is_quiet:
            log.debug("Issuer credentials still unusable: %s", reason)
            return
        log.error("Issuer credentials reload rejected, still serving the previous CA: %s", reason)
        if self._metrics is not None:
            self._metrics.reload_failed.inc()
        if self._health is not None:
            self._health.set_detail(HEALTH_DETAIL, f"reload rejected: {reason}")

    def _changed(self) -> None:
        if self._metrics is not None:
            self._metrics.issuercert_changed.inc()
        log.debug("Received issuer credentials changed signal")
        self._pending.set()

    async def wait_ready(self) -> None:
        """Return once the first attempt to install the watch is over (later changes are seen,
        or, if the watch could not be installed, found by the periodic re-read)."""
        await self._ready.wait()

    async def _watching(self) -> None:
        if self._health is not None:
            self._health.set_detail(WATCH_HEALTH_DETAIL, None)
        try:
            version = await self._off_loop(self._store.version, "looking up the credentials")
        except CredentialsUnavailable:
            version = None
        if version is None or version != self._loaded_version:
            self._changed()  # changed between the initial load and the watch start
        self._ready.set()

    async def _watch(self) -> None:
        while True:
            try:
                async for event in self._store.changes():
                    if event is StoreEvent.WATCHING:
                        await self._watching()
                    else:
                        self._changed()
            except Exception as err:  # a broken watch must not take the CA down either
                why = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
                reason = f"cannot watch {self._store.location}: {why}"
                log.error(
                    "Issuer credentials: %s; retrying in %s",
                    reason,
                    self._retry_interval,
                    exc_info=not isinstance(err, OSError),
                )
                if self._health is not None:
                    self._health.set_detail(WATCH_HEALTH_DETAIL, reason)
                self._ready.set()
                self._pending.set()  # look at the files now: nothing tells us of changes
            await asyncio.sleep(self._retry_interval.total_seconds())

    async def _next_trigger(self) -> bool:
        """Wait for a change (True) or, while failing, for the retry interval (False)."""
        if self.failure is None:
            await self._pending.wait()
            return True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._retry_interval.total_seconds()):
                await self._pending.wait()
            return True
        return False

    async def run(self) -> None:
        """Watch and reload until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._watch())
            while True:
                if await self._next_trigger():
                    await asyncio.sleep(self._quiet_period.total_seconds())
                    self._pending.clear()
                    log.warning("Issuer credentials changed; reloading")
                    await self.reload()
                else:
                    await self.reload(retry=True)
