"""The security provider: fetch the initial identity, then renew it at 50% of its lifetime.

As Dapr's kit ``crypto/spiffe`` (§9.5): every (re)issue uses a new key and CSR; the loop wakes at
least once a minute; a failed renewal is logged (``Error renewing identity, trying again in 10
seconds: ...``) and retried after 10 s while the old SVID stays in use. When Sentry refused it to
shed load (RESOURCE_EXHAUSTED), the retry comes after 5 to 15 s, at random: sidecars refused
together do not come back together. Subscribers are called
with each new SVID (not the initial one: read :meth:`SecurityProvider.current` after ``start``).
A small jitter (default up to 5% of the lifetime, at most 5 minutes) moves each renewal earlier
so that many sidecars started together do not renew together.

The clock and the sleep function are injected: tests drive renewal with a fake clock.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from cryptography import x509

from pysentry.clock import Clock, system_clock
from pysentry.errors import SentryUnavailable
from pysentry.pki.csr import build_csr
from pysentry.pki.keys import KeyAlgorithm, PrivateKey, generate_key
from pysentry.security.identity import RENEWAL_FRACTION, X509Svid

if TYPE_CHECKING:
    from pysentry.security.events import SecurityEvents

log = logging.getLogger(__name__)

CertRequester = Callable[[bytes], Awaitable[tuple[x509.Certificate, ...]]]
BlockingCertRequester = Callable[[bytes], tuple[x509.Certificate, ...]]
IdentityCallback = Callable[[X509Svid], None]
Jitter = Callable[[timedelta], timedelta]
Sleep = Callable[[float], Awaitable[None]]

RETRY_INTERVAL = timedelta(seconds=10)
MAX_WAKE_INTERVAL = timedelta(minutes=1)
MAX_JITTER = timedelta(minutes=5)


async def _asyncio_sleep(seconds: float) -> None:
    import asyncio  # daprd's first identity is fetched before asyncio is imported

    await asyncio.sleep(seconds)


def default_jitter(lifetime: timedelta) -> timedelta:
    """Renew up to 5% of the lifetime (at most 5 minutes) early, at random."""
    return min(lifetime * 0.05, MAX_JITTER) * random.random()


def no_jitter(lifetime: timedelta) -> timedelta:
    return timedelta(0)


def go_time(at: datetime) -> str:
    """Go's ``time.Time.String()`` for a UTC time: ``2024-01-02 03:04:05.5 +0000 UTC``."""
    at = at.astimezone(UTC)
    fraction = f"{at.microsecond:06d}".rstrip("0")
    return at.strftime("%Y-%m-%d %H:%M:%S") + (f".{fraction}" if fraction else "") + " +0000 UTC"


def _reason(err: BaseException) -> str:
    return str(getattr(err, "reason", "sign"))


class SecurityProvider:
    """Holds the current :class:`X509Svid` and keeps it fresh."""

    def __init__(
        self,
        requester: CertRequester,
        *,
        app_id: str | None = None,
        key_algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256,
        clock: Clock = system_clock,
        sleep: Sleep = _asyncio_sleep,
        jitter: Jitter = default_jitter,
        metrics: SecurityEvents | None = None,
        on_rotate: IdentityCallback | None = None,
        retry_interval: timedelta = RETRY_INTERVAL,
        max_wake_interval: timedelta = MAX_WAKE_INTERVAL,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._requester = requester
        self.app_id = app_id
        self.key_algorithm = key_algorithm
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._metrics = metrics
        self._retry_interval = retry_interval
        self._max_wake = max_wake_interval
        self._rand = rand
        self._svid: X509Svid | None = None
        self._renew_at: datetime | None = None
        self._next_attempt_at: datetime | None = None
        self._callbacks: list[IdentityCallback] = [on_rotate] if on_rotate else []
        self.renewals = 0
        self.failures = 0

    # -- state -----------------------------------------------------------------------------

    def current(self) -> X509Svid:
        """The identity in use. ``start()`` must have succeeded."""
        if self._svid is None:
            raise RuntimeError("SecurityProvider.current() called before start() succeeded")
        return self._svid

    @property
    def renewal_at(self) -> datetime:
        """When the next renewal is due (50% of the lifetime, minus jitter)."""
        if self._renew_at is None:
            raise RuntimeError("SecurityProvider has no identity yet")
        return self._renew_at

    def subscribe(self, callback: IdentityCallback) -> Callable[[], None]:
        """Call ``callback(new_svid)`` after each rotation; returns an unsubscribe function."""
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return unsubscribe

    def _install(self, svid: X509Svid) -> None:
        self._svid = svid
        now = self._clock()
        renew_at = svid.renewal_at() - self._jitter(svid.lifetime)
        if renew_at <= now:
            # Dapr's 50% point of the backdated window is already past when workloadCertTTL is
            # not longer than allowedClockSkew (10s TTL, 15m skew): renewing "now" would loop.
            # Renew at half of the validity that is left instead.
            renew_at = now + (svid.not_after - now) * RENEWAL_FRACTION
        self._renew_at = renew_at
        self._next_attempt_at = self._renew_at

    # -- issuing ---------------------------------------------------------------------------

    async def _new_key(self) -> PrivateKey:
        if self.key_algorithm == KeyAlgorithm.RSA:  # ~50 ms: keep the loop responsive
            import asyncio

            return await asyncio.to_thread(generate_key, self.key_algorithm)
        return generate_key(self.key_algorithm)

    async def fetch(self) -> X509Svid:
        """One issuance with a new key; does not change the current identity."""
        key = await self._new_key()
        chain = await self._requester(build_csr(key))
        return X509Svid.from_chain(tuple(chain), key)

    async def start(self) -> X509Svid:
        """Fetch the initial identity; ``SentryUnavailable`` if it cannot be had."""
        log.info("Fetching initial identity")
        try:
            svid = await self.fetch()
        except Exception as err:
            raise self._start_failed(err) from err
        return self._started(svid)

    def start_blocking(self, requester: BlockingCertRequester) -> X509Svid:
        """:meth:`start` on this thread, the request made by ``requester`` (blocking): daprd's
        first identity, before its event loop exists. Renewals use the async requester."""
        log.info("Fetching initial identity")
        try:
            key = generate_key(self.key_algorithm)
            svid = X509Svid.from_chain(tuple(requester(build_csr(key))), key)
        except Exception as err:
            raise self._start_failed(err) from err
        return self._started(svid)

    def _start_failed(self, err: Exception) -> SentryUnavailable:
        if self._metrics:
            self._metrics.init_failed(_reason(err))
        return SentryUnavailable(f"failed to retrieve the initial identity: {err}")

    def _started(self, svid: X509Svid) -> X509Svid:
        self._install(svid)
        if self._metrics:
            self._metrics.initialized()
        log.info("Security is initialized successfully")
        log.debug(
            "Workload identity %s, serial %s, expires on %s",
            svid.spiffe_id,
            svid.serial,
            go_time(svid.not_after),
        )
        return svid

    async def renew(self) -> X509Svid:
        """Fetch a new identity now and switch to it; the old one stays if this raises."""
        old = self.current()
        log.info("Renewing workload identity; cert expires on: %s", go_time(old.not_after))
        svid = await self.fetch()
        self._install(svid)
        self.renewals += 1
        if self._metrics:
            self._metrics.cert_rotated()
        log.info(
            "Successfully renewed workload identity; cert expires on: %s, renewal at: %s",
            go_time(svid.not_after),
            go_time(self.renewal_at),
        )
        log.debug("New workload identity %s, serial %s", svid.spiffe_id, svid.serial)
        for callback in list(self._callbacks):
            try:
                callback(svid)
            except Exception:
                log.exception("Identity rotation subscriber %r failed", callback)
        return svid

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Renew forever (until cancelled). ``start()`` must have succeeded."""
        svid = self.current()
        log.info(
            "Starting workload identity expiry watcher; cert expires on: %s, renewal at: %s",
            go_time(svid.not_after),
            go_time(self.renewal_at),
        )
        while True:
            now = self._clock()
            due = self._next_attempt_at or now
            if now < due:
                await self._sleep(min(self._max_wake, due - now).total_seconds())
                continue
            try:
                await self.renew()
            except Exception as err:
                self._renewal_failed(err, now)

    def _renewal_failed(self, err: Exception, now: datetime) -> None:
        self.failures += 1
        if self._metrics:
            self._metrics.cert_rotation_failed(_reason(err))
        retry = self._retry_interval
        if getattr(err, "status", None) == "RESOURCE_EXHAUSTED":
            retry = retry * (0.5 + self._rand())
        log.error(
            "Error renewing identity, trying again in %d seconds: %s", retry.total_seconds(), err
        )
        svid = self.current()
        if now > svid.not_after:
            log.warning(
                "Workload certificate of %s expired on %s; peers refuse it until renewal succeeds",
                svid.spiffe_id,
                go_time(svid.not_after),
            )
        self._next_attempt_at = self._clock() + retry
