"""Sentry going away and coming back; a zero-downtime root swap through the watched anchors file."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time

import aiohttp

from pysentry.fileio import write_atomic
from pysentry.testing import TestCA
from tests.e2e.conftest import Cluster, Daprd
from tests.e2e.test_rotation import steady_load

RECYCLE = ["--internal-connection-max-age", "1s"]


async def wait_metric(d: Daprd, name: str, at_least: float, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while True:
            value = await d.metric(s, name)
            if value >= at_least or time.monotonic() > deadline:
                return value
            await asyncio.sleep(0.2)


def registrations(cluster: Cluster, *daprds: Daprd) -> str:
    """The name-resolution rows, the time now and the sidecars' registration log lines (for a
    failure message: a stale row answers ``no host found``)."""
    with contextlib.closing(sqlite3.connect(cluster.nr_db)) as db:
        rows = db.execute("SELECT app_id, address, last_update FROM hosts").fetchall()
    lines = [
        f"{d.app_id}: {line[:200]}"
        for d in daprds
        for line in d.proc.text().splitlines()
        if "registration" in line or "resolution" in line or "level=error" in line
    ]
    return f"now={time.time():.2f} rows={rows} log={lines[-20:]}"


ROTATED = "dapr_runtime_mtls_workload_cert_rotated_total"
ROTATE_FAILED = "dapr_runtime_mtls_workload_cert_rotated_fail_total"


async def test_sentry_down_calls_continue_and_renewal_resumes(cluster: Cluster) -> None:
    ca = TestCA.create("localhost")
    creds = cluster.tmp / "creds"
    creds.mkdir(mode=0o700)
    ca.write_credentials(creds)
    # TTL 24s + 1s skew: first renewal ~11.5 s after issuance, retries every 10 s.
    sentry, port = await cluster.sentry(creds, ttl="24s")
    _, b_port = await cluster.app("appB")
    b = await cluster.daprd(
        "appB", b_port, sentry_port=port, anchors_pem=ca.anchors_pem(), args=RECYCLE
    )
    a = await cluster.daprd("appA", sentry_port=port, anchors_pem=ca.anchors_pem(), args=RECYCLE)
    load = asyncio.create_task(steady_load(a, 24, workers=2))
    await asyncio.sleep(1)
    sentry.stop()
    # The renewal attempt while Sentry is down fails; the current certificates stay in use.
    assert await wait_metric(a, ROTATE_FAILED, 1, timeout=15) >= 1
    assert await wait_metric(b, ROTATE_FAILED, 1, timeout=3) >= 1
    async with aiohttp.ClientSession() as s:
        assert await a.metric(s, ROTATED) == 0
    await cluster.sentry(creds, ttl="24s", port=port, name="sentry-restarted")
    # The next retry (10 s later) reaches the restarted Sentry.
    assert await wait_metric(a, ROTATED, 1, timeout=13) >= 1
    assert await wait_metric(b, ROTATED, 1, timeout=3) >= 1
    ok, failures = await load
    assert failures == [], (failures[:10], registrations(cluster, a, b))
    assert ok > 200


def _pem(ca: TestCA) -> bytes:
    return ca.anchors_pem()


async def test_root_swap_through_anchors_file_without_restarts(cluster: Cluster) -> None:
    old = TestCA.create("localhost")
    new = TestCA.create("localhost")
    creds = cluster.tmp / "creds"
    creds.mkdir(mode=0o700)
    old.write_credentials(creds)
    anchors = cluster.tmp / "anchors" / "ca.crt"
    anchors.parent.mkdir()
    anchors.write_bytes(_pem(old))
    sentry, port = await cluster.sentry(creds, ttl="6s")
    _, b_port = await cluster.app("appB")
    b = await cluster.daprd("appB", b_port, sentry_port=port, anchors_file=anchors, args=RECYCLE)
    a = await cluster.daprd("appA", sentry_port=port, anchors_file=anchors, args=RECYCLE)
    load = asyncio.create_task(steady_load(a, 14, workers=2))

    # 1. Trust both roots (the sidecars reload the watched file).
    write_atomic(anchors, _pem(old) + _pem(new), mode=0o644)
    for d in (a, b):
        await d.proc.wait_log("Trust anchors file changed", timeout=8)
    # 2. Re-root Sentry onto the new root (it hot-reloads its credentials directory).
    write_atomic(creds / "issuer.key", new.bundle.issuer_key_pem())
    write_atomic(creds / "issuer.crt", new.bundle.issuer_chain_pem())
    write_atomic(creds / "ca.crt", _pem(old) + _pem(new))
    await sentry.wait_log("CA certificate key pair ready(.|\n)*CA certificate key pair ready", 10)
    async with aiohttp.ClientSession() as s:
        before = (await a.metric(s, ROTATED), await b.metric(s, ROTATED))
    assert await wait_metric(a, ROTATED, before[0] + 2, timeout=8) >= before[0] + 2
    assert await wait_metric(b, ROTATED, before[1] + 2, timeout=8) >= before[1] + 2

    # 3. A newcomer that trusts ONLY the new root talks to both old sidecars, both ways:
    #    so A and B now hold certificates from the new root and trust it.
    _, c_port = await cluster.app("appC")
    c = await cluster.daprd("appC", c_port, sentry_port=port, anchors_pem=_pem(new))
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{a.url}/v1.0/invoke/appC/method/raw", data=b"a->c") as r:
            assert (r.status, await r.read()) == (200, b"a->c")
        async with s.post(f"{c.url}/v1.0/invoke/appB/method/raw", data=b"c->b") as r:
            assert (r.status, await r.read()) == (200, b"c->b")

    ok, failures = await load
    assert failures == [], (failures[:10], registrations(cluster, a, b))
    assert ok > 100
    assert a.proc.alive() and b.proc.alive()
