"""Certificates rotate under steady load and no request fails (short version + opt-in soak).

Sentry issues with a short ``workloadCertTTL`` and Dapr's default ``allowedClockSkew`` (15m), as a
user following the docs would configure it: the sidecars renew at half of the validity left when a
certificate arrives (docs/choices.md, "Renewal"). The caller recycles its sidecar-to-sidecar
connections every second (``--internal-connection-max-age 1s``), so new handshakes keep
happening with freshly rotated certificates on both sides while requests flow.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from pysentry.sidecar.resolver import SqliteResolver, SqliteSettings
from pysentry.testing import TestCA
from tests.e2e.conftest import Cluster, Daprd


def creds(tmp: Path) -> TestCA:
    ca = TestCA.create("localhost")
    d = tmp / "creds"
    d.mkdir(mode=0o700)
    ca.write_credentials(d)
    return ca


async def steady_load(
    a: Daprd, seconds: float, *, workers: int = 4, rate_per_worker: float = 10
) -> tuple[int, list[str]]:
    """Requests A -> B for ``seconds``; returns (ok count, failures)."""
    failures: list[str] = []
    ok = 0
    start = time.monotonic()
    deadline = start + seconds

    async def worker(n: int, session: aiohttp.ClientSession) -> None:
        nonlocal ok
        i = 0
        while time.monotonic() < deadline:
            body = f"w{n}-{i}".encode()
            at = time.monotonic() - start  # when it was sent: failures say when they happened
            try:
                async with session.post(f"{a.url}/v1.0/invoke/appB/method/raw", data=body) as r:
                    got = await r.read()
                    if r.status == 200 and got == body:
                        ok += 1
                    else:
                        failures.append(f"+{at:.1f}s {r.status}: {got[:200]!r}")
            except aiohttp.ClientError as err:
                failures.append(f"+{at:.1f}s {err!r}")
            i += 1
            await asyncio.sleep(1 / rate_per_worker)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(n, session) for n in range(workers)))
    return ok, failures


async def run_rotation(cluster: Cluster, ttl: str, seconds: float) -> tuple[float, float, int]:
    ca = creds(cluster.tmp)
    _, sentry_port = await cluster.sentry(cluster.tmp / "creds", ttl=ttl, skew=None)
    _, b_port = await cluster.app("appB")
    args = ["--internal-connection-max-age", "1s"]
    b = await cluster.daprd(
        "appB", b_port, sentry_port=sentry_port, anchors_pem=ca.anchors_pem(), args=args
    )
    a = await cluster.daprd(
        "appA", sentry_port=sentry_port, anchors_pem=ca.anchors_pem(), args=args
    )
    started_at = datetime.now(UTC)
    ok, failures = await steady_load(a, seconds)
    assert failures == [], failures[:10]
    # Each rotated identity reaches name resolution too (what `dapr list` shows).
    await asyncio.sleep(0.5)
    nr = SqliteResolver(SqliteSettings(cluster.nr_db))
    try:
        expiry = {r.app_id: r.cert_expiry_at for r in nr.list_registrations(include_stale=True)}
    finally:
        nr.close()
    published = expiry["appA"]
    assert published is not None and published > started_at + timedelta(seconds=seconds / 2)
    async with aiohttp.ClientSession() as s:
        rot_a = await a.metric(s, "dapr_runtime_mtls_workload_cert_rotated_total")
        rot_b = await b.metric(s, "dapr_runtime_mtls_workload_cert_rotated_total")
        fail_a = await a.metric(s, "dapr_runtime_mtls_workload_cert_rotated_fail_total")
    assert fail_a == 0
    print(f"rotation: ttl={ttl} load={seconds}s ok={ok} rotations A={rot_a:.0f} B={rot_b:.0f}")
    return rot_a, rot_b, ok


async def test_rotation_under_load_short(cluster: Cluster) -> None:
    # TTL 4s, default 15m skew: renewal ~2 s after each issuance.
    rot_a, rot_b, ok = await run_rotation(cluster, "4s", 15)
    assert rot_a >= 5 and rot_b >= 5, (rot_a, rot_b)
    assert ok >= 300


@pytest.mark.soak
@pytest.mark.timeout(180)
async def test_rotation_under_load_soak(cluster: Cluster) -> None:
    # The numbers: workloadCertTTL 10s, >= 60 s of steady load.
    rot_a, rot_b, ok = await run_rotation(cluster, "10s", 65)
    assert rot_a >= 10 and rot_b >= 10, (rot_a, rot_b)
    assert ok >= 2000
