"""Hot reload of the issuer credentials (spec §8.1), without restarting the gRPC server.

The credential *directories* are watched (so symlink-swapped Kubernetes secrets are seen). On the
first event: count ``issuercert_changed_total``, wait a quiet period (Dapr's 2 s) to batch further
events, log ``Issuer credentials changed; reloading`` and load the files. A valid bundle replaces
the old one and Sentry's serving SVID is re-issued from it; an invalid or incomplete one is
rejected: the last good bundle keeps serving, and the reason goes to the log, to
``dapr_sentry_issuercert_reload_failed_total`` and to the ``/healthz`` detail. Nothing is ever
generated during a reload.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from pysentry.clock import Clock, system_clock
from pysentry.errors import InvalidBundle
from pysentry.sentry.ca import CertificateAuthority
from pysentry.sentry.monitoring import Health, SentryMetrics
from pysentry.sentry.store import FileStore, Fingerprint
from pysentry.watch import watch_directories

log = logging.getLogger(__name__)

HEALTH_DETAIL = "issuer-credentials"
_WATCH_DEBOUNCE = timedelta(milliseconds=5)  # kit's fswatcher batches per-file events for 5 ms


class CredentialsReloader:
    def __init__(
        self,
        store: FileStore,
        ca: CertificateAuthority,
        *,
        on_swap: Callable[[], Awaitable[object]],
        metrics: SentryMetrics | None,
        health: Health | None,
        quiet_period: timedelta,
        loaded_fingerprint: Fingerprint,
        clock: Clock = system_clock,
    ) -> None:
        self._store = store
        self._ca = ca
        self._on_swap = on_swap
        self._metrics = metrics
        self._health = health
        self._quiet_period = quiet_period
        self._clock = clock
        self._pending = asyncio.Event()
        self._ready = asyncio.Event()
        self._loaded_fingerprint = loaded_fingerprint

    async def reload(self) -> bool:
        """Load the files now; swap if valid. Returns whether the new bundle is in use."""
        fingerprint = self._store.fingerprint()
        try:
            bundle = self._store.load(now=self._clock())
        except InvalidBundle as err:
            log.error("Issuer credentials reload rejected, still serving the previous CA: %s", err)
            if self._metrics is not None:
                self._metrics.reload_failed.inc()
            if self._health is not None:
                self._health.set_detail(HEALTH_DETAIL, f"reload rejected: {err}")
            return False
        self._ca.swap(bundle)
        self._loaded_fingerprint = fingerprint
        if self._metrics is not None:
            self._metrics.ca_loaded(
                issuer_not_after=bundle.issuer_not_after, root_not_after=bundle.root_not_after
            )
        if self._health is not None:
            self._health.set_detail(HEALTH_DETAIL, None)
        log.info("CA certificate key pair ready")
        try:
            await self._on_swap()
        except Exception:
            log.error("Failed to re-issue the serving certificate after a reload", exc_info=True)
        return True

    def _changed(self) -> None:
        if self._metrics is not None:
            self._metrics.issuercert_changed.inc()
        log.debug("Received issuer credentials changed signal")
        self._pending.set()

    async def wait_ready(self) -> None:
        """Return once the directory watch is installed (later changes are seen)."""
        await self._ready.wait()

    def _watching(self) -> None:
        if self._store.fingerprint() != self._loaded_fingerprint:
            self._changed()  # changed between the initial load and the watch start
        self._ready.set()

    async def run(self) -> None:
        """Watch until cancelled; the directories must exist."""
        directories = self._store.paths.directories()
        log.info("Starting watch on filesystem directories: [%s]",
                 " ".join(str(d) for d in directories))
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(
                watch_directories(
                    directories,
                    self._changed,
                    on_ready=self._watching,
                    debounce=_WATCH_DEBOUNCE,
                    step=_WATCH_DEBOUNCE,
                )
            )
            while True:
                await self._pending.wait()
                await asyncio.sleep(self._quiet_period.total_seconds())
                self._pending.clear()
                log.warning("Issuer credentials changed; reloading")
                await self.reload()
