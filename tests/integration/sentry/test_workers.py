"""``sentry --workers N``: forked workers share the gRPC port and the one CA state.

Real processes throughout: every worker signs, the metrics add up across them on the one
``/metrics`` endpoint, a rotation of the issuer files reaches every worker, a killed worker is
replaced, and SIGTERM (or the main process dying) leaves no worker behind.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import signal
import tempfile
import time
from pathlib import Path

from pysentry.pki.pem import load_certificates
from pysentry.sentry.cpus import MAX_DEFAULT_WORKERS, cgroup_cpu_limit
from pysentry.sentry.frontend import METRICS_DIR_PREFIX as METRICS_DIR
from pysentry.sentry.options import parse_options
from pysentry.testing import TestCA

from .conftest import SentryProcess, StartSentry, make_request, run_sentry_to_exit

WORKER_LINE = re.compile(r"Sentry worker (\d+) of (\d+) signing: pid (\d+)")
SERIES = re.compile(r'^pysentry_sentry_worker_certs_signed\{pid="(\d+)",worker="(\d+)"\} (\S+)$')
BATCH = 8
MAX_REQUESTS = 400
MAX_SECONDS = 30.0


def workers(sentry: SentryProcess) -> dict[int, int]:
    """Worker index -> pid of the latest start of each, from its log line."""
    found: dict[int, int] = {}
    for match in WORKER_LINE.finditer(sentry.log_text()):
        found[int(match[1])] = int(match[3])
    return found


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in metrics:\n{text}")


def per_worker(text: str) -> dict[int, tuple[int, float]]:
    """pid -> (worker index, certificates it signed), for each live worker."""
    out = {}
    for line in text.splitlines():
        match = SERIES.match(line)
        if match:
            out[int(match[1])] = (int(match[2]), float(match[3]))
    return out


async def sign_until_every_worker_signed(
    sentry: SentryProcess, baseline: dict[int, tuple[int, float]], anchors: bytes | None = None
) -> list[bytes]:
    """Sign (new connection each, BATCH at a time) until each live worker's count grew past
    ``baseline``; bounded in count and time. Returns the issued chains."""
    chains: list[bytes] = []
    deadline = time.monotonic() + MAX_SECONDS
    while len(chains) < MAX_REQUESTS and time.monotonic() < deadline:
        responses = await asyncio.gather(
            *(sentry.sign(make_request(f"app-{i}"), anchors) for i in range(BATCH))
        )
        chains.extend(r.workload_certificate for r in responses)
        now = per_worker(sentry.metrics())
        if len(now) >= 2 and all(n > baseline.get(pid, (0, 0.0))[1] for pid, (_, n) in now.items()):
            return chains
    raise AssertionError(f"not every worker signed after {len(chains)} requests: {now}")


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_gone(pids: list[int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(gone(p) for p in pids):
        time.sleep(0.05)
    assert all(gone(p) for p in pids), f"workers still running: {[p for p in pids if not gone(p)]}"


def test_default_is_the_cpus_this_process_may_use() -> None:
    expected = min(len(os.sched_getaffinity(0)), MAX_DEFAULT_WORKERS)
    limit = cgroup_cpu_limit()
    if limit is not None:
        expected = min(expected, max(1, math.ceil(limit)))
    assert parse_options([], env={}).workers == expected
    assert parse_options(["--workers", "1"], env={}).workers == 1


async def test_every_worker_signs_and_the_metrics_add_up(start_sentry: StartSentry) -> None:
    sentry = start_sentry("--workers", "2")
    sentry.wait_for_log("Sentry worker 2 of 2 signing", count=1)
    sentry.wait_for_log("Sentry worker 1 of 2 signing", count=1)
    pids = workers(sentry)
    assert sorted(pids) == [1, 2] and len(set(pids.values())) == 2
    assert sentry.proc.pid not in pids.values()

    chains = await sign_until_every_worker_signed(sentry, {})
    text = sentry.metrics()
    series = per_worker(text)
    assert {pid: index for pid, (index, _) in series.items()} == {v: k for k, v in pids.items()}
    assert all(n > 0 for _, n in series.values())
    # Each request is counted once, by the worker that signed it; one endpoint adds them up.
    assert metric(text, "dapr_sentry_cert_sign_request_received_total") == len(chains)
    assert metric(text, "dapr_sentry_cert_sign_success_total") == len(chains)
    assert sum(n for _, n in series.values()) == len(chains)
    for name in ("dapr_sentry_cert_sign_success_total", "dapr_sentry_issuercert_expiry_timestamp"):
        assert sum(line.startswith(name) for line in text.splitlines()) == 1, text
    assert "# HELP dapr_sentry_cert_sign_success_total The number of certificates" in text
    status, _ = sentry.healthz()
    assert status == 200


async def test_rotated_issuer_reaches_every_worker(
    start_sentry: StartSentry, tmp_path: Path
) -> None:
    creds = tmp_path / "certs"
    creds.mkdir(mode=0o700)
    TestCA.create("cluster.local").write_credentials(creds)
    sentry = start_sentry("--workers", "2", "--trust-domain", "cluster.local", creds=creds)
    sentry.wait_for_log("Sentry worker 2 of 2 signing")
    sentry.wait_for_log("Sentry worker 1 of 2 signing")
    new_ca = TestCA.create("cluster.local")
    new_ca.write_credentials(creds)
    sentry.wait_for_log("CA certificate key pair ready", count=2)
    sentry.wait_for_log("Sentry worker 1 of 2: CA bundle replaced")
    sentry.wait_for_log("Sentry worker 2 of 2: CA bundle replaced")
    sentry.wait_for_log("Serving certificate rotated")
    assert sentry.log_text().count("Issuer credentials changed; reloading") == 1  # one watcher

    baseline = per_worker(sentry.metrics())
    chains = await sign_until_every_worker_signed(sentry, baseline, new_ca.anchors_pem())
    # Every worker signed since the reload, and every certificate is from the new issuer.
    assert {load_certificates(c)[1] for c in chains} == {new_ca.cert}


async def test_a_killed_worker_is_replaced(start_sentry: StartSentry) -> None:
    sentry = start_sentry("--workers", "2")
    sentry.wait_for_log("Sentry worker 2 of 2 signing")
    sentry.wait_for_log("Sentry worker 1 of 2 signing")
    first = await sign_until_every_worker_signed(sentry, {})
    victim = workers(sentry)[1]
    os.kill(victim, signal.SIGKILL)
    sentry.wait_for_log(f"Sentry worker 1 (pid {victim}) was killed by SIGKILL; starting a new one")
    sentry.wait_for_log("Sentry worker 1 of 2 signing", count=2)
    replacement = workers(sentry)[1]
    assert replacement != victim
    wait_gone([victim])

    second = await sign_until_every_worker_signed(sentry, per_worker(sentry.metrics()))
    text = sentry.metrics()
    assert victim not in per_worker(text)  # a dead worker's own series goes
    # ... but what it counted stays in the totals.
    assert metric(text, "dapr_sentry_cert_sign_success_total") == len(first) + len(second)
    assert sentry.healthz()[0] == 200


async def test_sigterm_stops_every_worker(start_sentry: StartSentry) -> None:
    sentry = start_sentry("--workers", "3")
    sentry.wait_for_log("Sentry worker 3 of 3 signing")
    sentry.wait_for_log("Sentry worker 2 of 3 signing")
    sentry.wait_for_log("Sentry worker 1 of 3 signing")
    await sentry.sign(make_request())
    pids = list(workers(sentry).values())
    metrics_dirs = list(Path(tempfile.gettempdir()).glob(f"{METRICS_DIR}{sentry.proc.pid}-*"))
    assert len(metrics_dirs) == 1 and metrics_dirs[0].stat().st_mode & 0o777 == 0o700
    assert sentry.stop() == 0
    assert "Sentry shut down gracefully" in sentry.log_text()
    wait_gone(pids, timeout=1.0)  # reaped by the main process before it exited
    assert not metrics_dirs[0].exists()


async def test_workers_die_with_the_main_process(start_sentry: StartSentry) -> None:
    sentry = start_sentry("--workers", "2")
    sentry.wait_for_log("Sentry worker 2 of 2 signing")
    sentry.wait_for_log("Sentry worker 1 of 2 signing")
    pids = list(workers(sentry).values())
    sentry.proc.kill()
    sentry.proc.wait(timeout=10)
    wait_gone(pids)
    # The next Sentry removes the metrics directory the killed one left.
    left = list(Path(tempfile.gettempdir()).glob(f"{METRICS_DIR}{sentry.proc.pid}-*"))
    assert len(left) == 1
    start_sentry("--workers", "2")
    assert not left[0].exists()


def test_one_worker_signs_in_the_main_process(start_sentry: StartSentry) -> None:
    sentry = start_sentry("--workers", "1")
    children = Path(f"/proc/{sentry.proc.pid}/task/{sentry.proc.pid}/children").read_text()
    assert children.split() == []
    assert "Sentry worker" not in sentry.log_text()


def test_a_worker_that_cannot_start_fails_the_start_as_one_process_does(tmp_path: Path) -> None:
    bad = tmp_path / "jwks.json"
    bad.write_text("not json\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: daprsystem\n"
        f"spec:\n  mtls:\n    tokenValidators:\n      - name: jwks\n        options:\n"
        f"          source: {bad}\n"
    )
    outputs = {}
    for count in ("1", "2"):
        code, output = run_sentry_to_exit(
            tmp_path / "certs", "--config", str(config), "--workers", count
        )
        assert code == 1, output
        outputs[count] = output
    fatal = f"Fatal error: jwks validator: failed to load the JWKS: invalid JWKS from {bad}"
    for output in outputs.values():
        assert output.count(fatal) == 1, output
