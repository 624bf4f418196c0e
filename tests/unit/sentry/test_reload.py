"""The reloader against a store whose reads really block (a thread waiting on a gate): bounded
waits, no pile-up of stuck reads, quiet retries, recovery without a change event."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Hashable
from datetime import UTC, datetime, timedelta

import pytest

from pysentry.credentials import (
    CredentialsUnavailable,
    StoredCredentials,
    StoreEvent,
    StoreState,
)
from pysentry.pki.bundle import CaBundle
from pysentry.sentry.ca import CaSettings, CertificateAuthority
from pysentry.sentry.monitoring import Health, SentryMetrics
from pysentry.sentry.reload import HEALTH_DETAIL, CredentialsReloader
from pysentry.sentry.validators import InsecureValidator, TokenValidator
from pysentry.spiffe import TrustDomain
from pysentry.testing import TestCA

SETTINGS = CaSettings(TrustDomain("cluster.local"), "dapr-system")


class ScriptedStore:
    """A CredentialStore whose ``load`` runs ``behaviour`` in the reloader's worker thread."""

    location = "'/scripted'"

    def __init__(self, behaviour: Callable[[], CaBundle]) -> None:
        self.behaviour = behaviour
        self.loads = 0

    def prepare(self) -> tuple[str, ...]:
        return ()

    def state(self) -> StoreState:
        return StoreState.COMPLETE

    def version(self) -> Hashable:
        return 0  # never "changed since the load": only retries re-read

    def load(self, *, now: datetime) -> StoredCredentials:
        self.loads += 1
        return StoredCredentials(self.behaviour(), self.loads)

    def save(self, bundle: CaBundle) -> None:
        raise AssertionError("a reload never saves")

    async def changes(self) -> AsyncIterator[StoreEvent]:
        yield StoreEvent.WATCHING
        await asyncio.Event().wait()


def make_reloader(
    store: ScriptedStore, **kwargs: object
) -> tuple[CredentialsReloader, CertificateAuthority, SentryMetrics, Health]:
    ca = CertificateAuthority(
        TestCA.create("cluster.local").bundle,
        SETTINGS,
        validators={TokenValidator.INSECURE: InsecureValidator()},
        default_validator=TokenValidator.INSECURE,
    )
    metrics, health = SentryMetrics(), Health()

    async def on_swap() -> None:
        pass

    reloader = CredentialsReloader(
        store,
        ca,
        on_swap=on_swap,
        metrics=metrics,
        health=health,
        quiet_period=timedelta(milliseconds=10),
        loaded_version=0,
        **kwargs,  # type: ignore[arg-type]
    )
    return reloader, ca, metrics, health


def failed_count(metrics: SentryMetrics) -> float:
    value = metrics.registry.get_sample_value("dapr_sentry_issuercert_reload_failed_total")
    assert value is not None
    return value


async def test_a_stuck_read_is_bounded_and_not_piled_on() -> None:
    gate = threading.Event()
    new = TestCA.create("cluster.local").bundle

    def blocked() -> CaBundle:
        assert gate.wait(timeout=30)
        return new

    store = ScriptedStore(blocked)
    reloader, ca, metrics, health = make_reloader(store, read_timeout=timedelta(seconds=0.1))
    try:
        async with asyncio.timeout(5):
            assert await reloader.reload() is False
        assert reloader.failure is not None and "did not finish within 0.1s" in reloader.failure
        assert "did not finish" in health.report()[1]["detail"][HEALTH_DETAIL]  # type: ignore[index]
        async with asyncio.timeout(5):
            assert await reloader.reload() is False  # the first read is still stuck
        assert "an earlier read has been blocked" in reloader.failure
        assert store.loads == 1  # no second thread stuck behind the first
        assert failed_count(metrics) == 2
    finally:
        gate.set()
    async with asyncio.timeout(5):
        assert await reloader.reload() is True  # a fresh read, once the old one is done
    assert ca.bundle is new and reloader.failure is None
    assert health.report()[1]["detail"] == {}


async def test_retries_report_a_reason_once() -> None:
    reasons = iter(["permission denied", "permission denied", "is a named pipe (FIFO)"])

    def failing() -> CaBundle:
        raise CredentialsUnavailable(next(reasons))

    reloader, _, metrics, _ = make_reloader(ScriptedStore(failing))
    assert await reloader.reload() is False
    assert await reloader.reload(retry=True) is False  # same reason: quiet
    assert failed_count(metrics) == 1
    assert await reloader.reload(retry=True) is False  # a new reason: reported
    assert failed_count(metrics) == 2


async def test_an_unexpected_error_keeps_the_ca(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> CaBundle:
        raise RuntimeError("bug")

    reloader, ca, metrics, _ = make_reloader(ScriptedStore(broken))
    before = ca.bundle
    assert await reloader.reload() is False
    assert ca.bundle is before and failed_count(metrics) == 1
    assert "reload failed unexpectedly" in caplog.text


async def test_recovers_by_retrying_without_a_change_event() -> None:
    outcomes: list[CaBundle | None] = [None, None, TestCA.create("cluster.local").bundle]

    def flaky() -> CaBundle:
        outcome = outcomes.pop(0)
        if outcome is None:
            raise CredentialsUnavailable("permission denied")
        return outcome

    store = ScriptedStore(flaky)
    reloader, ca, _, _ = make_reloader(store, retry_interval=timedelta(milliseconds=20))
    assert await reloader.reload() is False
    task = asyncio.create_task(reloader.run())
    try:
        async with asyncio.timeout(5):
            while reloader.failure is not None:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert store.loads == 3
    assert ca.bundle.issuer_not_after > datetime.now(UTC)


async def test_a_watch_that_cannot_be_installed_is_reported_and_retried() -> None:
    class BrokenWatch(ScriptedStore):
        attempts = 0

        async def changes(self) -> AsyncIterator[StoreEvent]:
            self.attempts += 1
            if self.attempts == 1:
                raise FileNotFoundError(2, "No such file or directory")
            async for event in super().changes():
                yield event

    store = BrokenWatch(lambda: TestCA.create("cluster.local").bundle)
    reloader, _, _, health = make_reloader(store, retry_interval=timedelta(milliseconds=20))
    task = asyncio.create_task(reloader.run())
    try:
        async with asyncio.timeout(5):
            await reloader.wait_ready()  # ready even though the first attempt failed
            detail = health.report()[1]["detail"]
            assert "cannot watch '/scripted': No such file or directory" in str(detail)
            while store.attempts < 2 or "issuer-credentials-watch" in str(
                health.report()[1]["detail"]
            ):
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert store.loads >= 1  # the files were looked at although no change was reported
