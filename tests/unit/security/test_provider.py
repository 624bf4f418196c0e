"""SecurityProvider: initial fetch, renewal at 50%, retries, keep-old, notifications, metrics.

Driven by a fake clock and a fake sleep that advances it; certificates come from a real
in-process CA (TestCA) signing the provider's CSRs.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from prometheus_client import CollectorRegistry

from pysentry.errors import SentryUnavailable
from pysentry.pki.csr import parse_csr
from pysentry.pki.keys import KeyAlgorithm
from pysentry.security.identity import X509Svid
from pysentry.security.metrics import SecurityMetrics
from pysentry.security.provider import SecurityProvider, go_time, no_jitter
from pysentry.security.sentry_failure import SentryRequestFailed
from pysentry.spiffe import SpiffeId
from pysentry.testing import TestCA

START = datetime(2030, 1, 1, tzinfo=UTC)
APP_ID = SpiffeId.parse("spiffe://public/ns/default/app")
TTL = timedelta(hours=1)
SKEW = timedelta(minutes=15)


@dataclass
class FakeTime:
    now: datetime = START
    sleeps: list[float] = field(default_factory=list)

    def clock(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)
        await asyncio.sleep(0)


@dataclass
class Requester:
    """Signs each CSR with a TestCA at the fake time; fails while ``failing`` is set."""

    time: FakeTime
    ca: TestCA = field(default_factory=lambda: TestCA.create("public", now=START))
    failing: int = 0
    calls: list[datetime] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    stop_after: int = 3
    ttl: timedelta = TTL
    failure: tuple[str, str, str | None] = (
        "failed to connect to Sentry at 'x:1': connection refused; is sentry running?",
        "sentry_conn",
        None,
    )

    async def __call__(self, csr_pem: bytes) -> tuple[x509.Certificate, ...]:
        self.calls.append(self.time.now)
        if len(self.calls) >= self.stop_after:
            self.done.set()
        if self.failing:
            self.failing -= 1
            message, reason, status = self.failure
            raise SentryRequestFailed(message, reason=reason, status=status)
        signed = self.ca.bundle.sign(
            parse_csr(csr_pem), APP_ID, now=self.time.now, ttl=self.ttl, skew=SKEW
        )
        return (signed.leaf, *self.ca.chain)


def _provider(
    time: FakeTime, requester: Requester, registry: CollectorRegistry | None = None, **kw: object
) -> SecurityProvider:
    metrics = SecurityMetrics.create(registry, "app") if registry else None
    return SecurityProvider(
        requester,
        clock=time.clock,
        sleep=time.sleep,
        jitter=no_jitter,
        metrics=metrics,
        **kw,  # type: ignore[arg-type]
    )


async def _run_until_done(provider: SecurityProvider, requester: Requester) -> None:
    task = asyncio.create_task(provider.run())
    try:
        await asyncio.wait_for(requester.done.wait(), timeout=10)
        for _ in range(5):
            await asyncio.sleep(0)  # let the last renewal finish
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, {"app_id": "app", **labels}) or 0.0


async def test_initial_identity_and_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pysentry.security")
    time, registry = FakeTime(), CollectorRegistry()
    requester = Requester(time)
    provider = _provider(time, requester, registry)
    svid = await provider.start()
    assert svid.spiffe_id == APP_ID
    assert provider.current() is svid
    assert svid.not_before == START - SKEW
    assert provider.renewal_at == START - SKEW + (TTL + SKEW) / 2
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["Fetching initial identity", "Security is initialized successfully"]
    assert _value(registry, "dapr_runtime_mtls_init_total") == 1


async def test_ttl_shorter_than_skew_renews_at_half_of_what_is_left() -> None:
    # workloadCertTTL 10s with the default 15m skew: Dapr's 50% point of the backdated window is
    # ~7m before issuance, which would renew in a tight loop. Renew 5s after receipt instead.
    time = FakeTime()
    requester = Requester(time, ttl=timedelta(seconds=10), stop_after=4)
    provider = _provider(time, requester)
    svid = await provider.start()
    assert svid.renewal_at() < START
    assert provider.renewal_at == START + timedelta(seconds=5)
    await _run_until_done(provider, requester)
    gaps = [later - earlier for earlier, later in itertools.pairwise(requester.calls)]
    assert len(gaps) >= 3
    assert set(gaps) == {timedelta(seconds=5)}


async def test_initial_failure_is_fatal_and_counted() -> None:
    time, registry = FakeTime(), CollectorRegistry()
    provider = _provider(time, Requester(time, failing=1), registry)
    with pytest.raises(SentryUnavailable) as info:
        await provider.start()
    assert str(info.value) == (
        "failed to retrieve the initial identity: failed to connect to Sentry at 'x:1': "
        "connection refused; is sentry running?"
    )
    assert _value(registry, "dapr_runtime_mtls_init_fail_total", reason="sentry_conn") == 1
    with pytest.raises(RuntimeError):
        provider.current()


async def test_renews_at_half_life_waking_at_least_every_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pysentry.security")
    time, registry = FakeTime(), CollectorRegistry()
    requester = Requester(time, stop_after=3)
    provider = _provider(time, requester, registry)
    first = await provider.start()
    rotated: list[X509Svid] = []
    provider.subscribe(rotated.append)
    await _run_until_done(provider, requester)

    half = (TTL + SKEW) / 2  # 37.5 minutes after NotBefore
    assert requester.calls[1] == START - SKEW + half
    assert requester.calls[2] == requester.calls[1] - SKEW + half
    assert max(time.sleeps) <= 60
    assert len(rotated) == 2
    assert rotated[0].leaf != first.leaf
    assert rotated[0].private_key is not first.private_key  # a new key every time
    assert provider.current() is rotated[-1]
    assert _value(registry, "dapr_runtime_mtls_workload_cert_rotated_total") == 2

    messages = [r.getMessage() for r in caplog.records]
    assert (
        f"Starting workload identity expiry watcher; cert expires on: {go_time(first.not_after)}, "
        f"renewal at: {go_time(first.renewal_at())}"
    ) in messages
    assert f"Renewing workload identity; cert expires on: {go_time(first.not_after)}" in messages
    assert (
        f"Successfully renewed workload identity; cert expires on: "
        f"{go_time(rotated[0].not_after)}, renewal at: {go_time(rotated[0].renewal_at())}"
    ) in messages


async def test_failed_renewal_retries_every_ten_seconds_and_keeps_the_old_svid(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pysentry.security")
    time, registry = FakeTime(), CollectorRegistry()
    requester = Requester(time, stop_after=4)
    provider = _provider(time, requester, registry)
    first = await provider.start()
    seen_during_failures: list[X509Svid] = []
    requester.failing = 2
    original_call = requester.__call__

    async def observing(csr: bytes) -> tuple[x509.Certificate, ...]:
        seen_during_failures.append(provider.current())
        return await original_call(csr)

    provider._requester = observing
    await _run_until_done(provider, requester)

    due = START - SKEW + (TTL + SKEW) / 2
    assert requester.calls[1:4] == [due, due + timedelta(seconds=10), due + timedelta(seconds=20)]
    assert all(svid is first for svid in seen_during_failures[:3])  # old SVID kept meanwhile
    assert provider.current() is not first
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "Error renewing identity, trying again in 10 seconds: failed to connect to Sentry at "
        "'x:1': connection refused; is sentry running?"
    ] * 2
    assert (
        _value(registry, "dapr_runtime_mtls_workload_cert_rotated_fail_total", reason="sentry_conn")
        == 2
    )
    assert _value(registry, "dapr_runtime_mtls_workload_cert_rotated_total") == 1


async def test_shed_renewal_retries_after_a_jittered_pause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pysentry.security")
    time = FakeTime()
    shed = (
        "error from sentry SignCertificate: rpc error: code = ResourceExhausted desc = too many "
        "certificate signing requests: signing could not start within 1s; retry later",
        "sign",
        "RESOURCE_EXHAUSTED",
    )
    requester = Requester(time, stop_after=4, failure=shed)
    draws = iter([0.0, 0.9])
    provider = _provider(time, requester, rand=lambda: next(draws))
    await provider.start()
    requester.failing = 2
    await _run_until_done(provider, requester)

    due = START - SKEW + (TTL + SKEW) / 2
    # 10 s x (0.5 + draw): 5 s, then 14 s; sidecars refused together come back apart
    assert requester.calls[1:4] == [due, due + timedelta(seconds=5), due + timedelta(seconds=19)]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        f"Error renewing identity, trying again in 5 seconds: {shed[0]}",
        f"Error renewing identity, trying again in 14 seconds: {shed[0]}",
    ]


async def test_expired_certificate_is_reported_while_renewal_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="pysentry.security")
    time = FakeTime()
    requester = Requester(time, stop_after=10_000)
    provider = _provider(time, requester)
    first = await provider.start()
    requester.failing = 10_000
    task = asyncio.create_task(provider.run())
    while time.now <= first.not_after + timedelta(seconds=30):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert provider.current() is first
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and warnings[0].startswith(
        "Workload certificate of spiffe://public/ns/default/app expired on "
    )


async def test_jitter_moves_renewal_earlier() -> None:
    time = FakeTime()
    provider = SecurityProvider(
        Requester(time), clock=time.clock, sleep=time.sleep, jitter=lambda _: timedelta(minutes=5)
    )
    svid = await provider.start()
    assert provider.renewal_at == svid.renewal_at() - timedelta(minutes=5)


async def test_subscriber_errors_do_not_stop_rotation() -> None:
    time = FakeTime()
    requester = Requester(time, stop_after=2)
    provider = _provider(time, requester)
    await provider.start()
    got: list[X509Svid] = []

    def broken(_: X509Svid) -> None:
        raise RuntimeError("subscriber bug")

    provider.subscribe(broken)
    unsubscribe = provider.subscribe(got.append)
    await provider.renew()
    assert len(got) == 1
    unsubscribe()
    await provider.renew()
    assert len(got) == 1


@pytest.mark.parametrize(
    ("algorithm", "key_type"),
    [(KeyAlgorithm.ED25519, ed25519.Ed25519PrivateKey), (KeyAlgorithm.RSA, rsa.RSAPrivateKey)],
    ids=["ed25519", "rsa"],
)
async def test_key_algorithm(algorithm: KeyAlgorithm, key_type: type) -> None:
    time = FakeTime()
    provider = _provider(time, Requester(time), key_algorithm=algorithm)
    svid = await provider.start()
    assert isinstance(svid.private_key, key_type)


def test_go_time_format() -> None:
    assert go_time(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2024-01-02 03:04:05 +0000 UTC"
    assert go_time(datetime(2024, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)) == (
        "2024-01-02 03:04:05.5 +0000 UTC"
    )
