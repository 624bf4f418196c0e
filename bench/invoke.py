"""Service invocation overhead: app -> sidecar -> sidecar -> app vs. app -> app directly.

Quick Python-only check (not the Go comparison: that is bench/vs_go.py, `make bench-go`).

Dapr's benchmark shape: 1 KB bodies over 16 connections, at fixed rates (default 1,000 and 200
requests/s) and at max throughput, for mTLS off and on, in one run. Reports p50/p90/p99 latency
(fixed rate; measured from each request's *scheduled* send time, so queueing counts), the
latency the two sidecars add over the direct baseline measured in the same run, throughput, and
CPU per process (from /proc, as % of one core). Dapr's published figure: +1.4 ms p90 / +2.1 ms
p99 at 1,000 rps.

Each measurement is repeated ``--reps`` times (short runs) and the table shows the median of the
repetitions (all repetitions are in the JSON). A fixed-rate run that falls behind is cut off at
1.5x its planned length; the requests it never sent are reported as ``unsent``, and a run that
got less than 95% of its rate is marked ``SAT`` (saturated: its percentiles cover only the
requests that were sent, and they are dominated by queueing).

    .venv/bin/python bench/invoke.py [--rates 1000,200] [--seconds 4] [--max-seconds 3]
                                     [--reps 3] [--profile-dir DIR]
                                     [--out bench/results/invoke.json]

The load generator is this process; Sentry, both daprd and the echo app are separate processes.
Nothing is pinned: all processes share the machine's cores with whatever else runs, so the
1-minute load average at start and end (and per configuration) is recorded in the JSON.
``--profile-dir`` runs each daprd under cProfile with a CPU-time timer and writes
``daprd-<app>-<mode>.prof`` there (adds a lot of overhead: use it for the breakdown only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
APP = ROOT / "tests" / "apps" / "http_app.py"
BODY = b"x" * 1024
CONNECTIONS = 16
CLK_TCK = os.sysconf("SC_CLK_TCK")
CUTOFF = 1.5  # a fixed-rate run stops sending at 1.5x its planned length
#: Runs daprd under cProfile with a CPU-time timer (wall time is skewed by other processes).
PROFILED_DAPRD = (
    "import cProfile, sys, time\n"
    "from pysentry.sidecar.main import main\n"
    "p = cProfile.Profile(time.process_time)\n"
    "p.enable()\n"
    "try:\n    main(sys.argv[2:])\n"
    "finally:\n    p.disable(); p.dump_stats(sys.argv[1])\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def runqueue_wait_seconds(pid: int) -> float:
    """Time the process's threads were runnable but waiting for a CPU (/proc schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


class Procs:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(
        self, name: str, cmd: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        full = {k: v for k, v in os.environ.items() if not k.startswith("DAPR_")}
        full.update({"HOME": str(self.tmp), **(env or {})})
        with (self.tmp / f"{name}.log").open("wb") as log:
            p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full, cwd=self.tmp)
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen[bytes]) -> None:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            self.stop(p)


async def wait_ready(url: str, ok: tuple[int, ...] = (200, 204), timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            try:
                async with s.get(url) as r:
                    if r.status in ok:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} not ready")


def percentile(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return float("nan")
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


async def fixed_rate(url: str, rate: float, seconds: float) -> dict[str, Any]:
    """Like fortio's ``-qps R -c 16``: each connection sends at rate/16 on its own schedule.

    A connection that falls behind sends its next request at once; latency counts from the
    scheduled time, so falling behind shows up in the percentiles (no coordinated omission).
    """
    conn = aiohttp.TCPConnector(limit=CONNECTIONS)
    lat: list[float] = []
    errors = unsent = 0
    per_conn = rate / CONNECTIONS
    n_each = max(1, int(per_conn * seconds))
    async with aiohttp.ClientSession(connector=conn) as s:

        async def one(scheduled: float) -> None:
            nonlocal errors
            try:
                async with s.post(url, data=BODY) as r:
                    body = await r.read()
                    if r.status != 200 or len(body) != len(BODY):
                        errors += 1
                        return
            except aiohttp.ClientError:
                errors += 1
                return
            lat.append((time.perf_counter() - scheduled) * 1000)

        async def connection(offset: float, start: float) -> None:
            nonlocal unsent
            cutoff = start + seconds * CUTOFF
            for i in range(n_each):
                at = start + offset + i / per_conn
                if time.perf_counter() > cutoff:
                    unsent += n_each - i
                    return
                delay = at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                await one(at)

        await asyncio.gather(*(one(time.perf_counter()) for _ in range(CONNECTIONS * 3)))
        lat.clear()
        start = time.perf_counter()
        await asyncio.gather(*(connection(c / rate, start) for c in range(CONNECTIONS)))
        wall = time.perf_counter() - start
    lat.sort()
    return {
        "requests": n_each * CONNECTIONS,
        "errors": errors,
        "unsent": unsent,
        "saturated": unsent > 0 or len(lat) < 0.95 * rate * wall,
        "achieved_rps": round(len(lat) / wall, 1),
        "p50_ms": round(percentile(lat, 0.50), 3),
        "p90_ms": round(percentile(lat, 0.90), 3),
        "p99_ms": round(percentile(lat, 0.99), 3),
        "wall_s": round(wall, 2),
    }


async def max_throughput(url: str, seconds: float) -> dict[str, Any]:
    conn = aiohttp.TCPConnector(limit=CONNECTIONS)
    done = errors = 0
    async with aiohttp.ClientSession(connector=conn) as s:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done, errors
            while time.perf_counter() < deadline:
                try:
                    async with s.post(url, data=BODY) as r:
                        await r.read()
                        done += r.status == 200
                        errors += r.status != 200
                except aiohttp.ClientError:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        wall = time.perf_counter() - start
    return {"rps": round(done / wall, 1), "errors": errors}


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-key median over repetitions (nested dicts too); booleans: true if any run was."""
    out: dict[str, Any] = {}
    for key, first in runs[0].items():
        values = [r[key] for r in runs]
        if isinstance(first, dict):
            out[key] = median_of(values)
        elif isinstance(first, bool):
            out[key] = any(values)
        elif isinstance(first, (int, float)):
            out[key] = round(statistics.median(values), 3)
        else:
            out[key] = first
    return out


async def fixed_once(url: str, pids: dict[str, int], rate: float, seconds: float) -> dict[str, Any]:
    before = {k: cpu_seconds(p) for k, p in pids.items()}
    waited = {k: runqueue_wait_seconds(p) for k, p in pids.items()}
    t0 = time.perf_counter()
    result = await fixed_rate(url, rate, seconds)
    wall = time.perf_counter() - t0
    cpu = {k: round(100 * (cpu_seconds(p) - before[k]) / wall, 1) for k, p in pids.items()}
    starved = {
        k: round(100 * (runqueue_wait_seconds(p) - waited[k]) / wall, 1) for k, p in pids.items()
    }
    return {**result, "cpu_pct": cpu, "runqueue_wait_pct": starved}


async def max_once(url: str, pids: dict[str, int], seconds: float) -> dict[str, Any]:
    before = {k: cpu_seconds(p) for k, p in pids.items()}
    t0 = time.perf_counter()
    peak = await max_throughput(url, seconds)
    wall = time.perf_counter() - t0
    peak["cpu_pct"] = {
        k: round(100 * (cpu_seconds(p) - before[k]) / wall, 1) for k, p in pids.items()
    }
    return peak


async def measure(url: str, pids: dict[str, int], args: argparse.Namespace) -> dict[str, Any]:
    load_start = os.getloadavg()[0]
    fixed: dict[str, Any] = {}
    for rate in args.rates:
        reps = [await fixed_once(url, pids, rate, args.seconds) for _ in range(args.reps)]
        fixed[str(int(rate))] = {**median_of(reps), "reps": reps}
    peaks = [await max_once(url, pids, args.max_seconds) for _ in range(args.reps)]
    return {
        "fixed": fixed,
        "max": {**median_of(peaks), "reps": peaks},
        "loadavg_1m": [load_start, os.getloadavg()[0]],
    }


async def sidecars(
    procs: Procs, app_port: int, mtls: bool, tmp: Path, profile_dir: Path | None = None
) -> tuple[str, dict[str, int], list[subprocess.Popen[bytes]]]:
    cfg = tmp / "daprd.yaml"
    cfg.write_text(
        "spec:\n  nameResolution:\n    component: sqlite\n    configuration:\n"
        f"      connectionString: {tmp / ('nr-mtls.db' if mtls else 'nr.db')}\n"
    )
    extra: list[str] = []
    env: dict[str, str] = {}
    started: list[subprocess.Popen[bytes]] = []
    if mtls:
        from pysentry.testing import TestCA

        ca = TestCA.create("localhost")
        creds = tmp / "creds"
        creds.mkdir(mode=0o700, exist_ok=True)
        ca.write_credentials(creds)
        sport, hport = free_port(), free_port()
        sentry = procs.spawn(
            "sentry",
            [
                str(BIN / "sentry"),
                "--issuer-credentials",
                str(creds),
                "--config",
                str(cfg),
                "--port",
                str(sport),
                "--healthz-port",
                str(hport),
                "--metrics-port",
                str(free_port()),
            ],
        )
        started.append(sentry)
        await wait_ready(f"http://127.0.0.1:{hport}/healthz")
        extra = ["--enable-mtls", "--sentry-address", f"127.0.0.1:{sport}"]
        env = {"DAPR_TRUST_ANCHORS": ca.anchors_pem().decode()}
    ports = {}
    pids = {}
    for app_id, port in (("appB", app_port), ("appA", None)):
        http = free_port()
        name = f"daprd-{app_id}-{'mtls' if mtls else 'plain'}"
        daprd = [str(BIN / "daprd")]
        if profile_dir is not None:
            prof = profile_dir.resolve() / f"{name}.prof"
            daprd = [sys.executable, "-c", PROFILED_DAPRD, str(prof)]
        cmd = [
            *daprd,
            "--app-id",
            app_id,
            "--dapr-http-port",
            str(http),
            "--metrics-port",
            str(free_port()),
            "--config",
            str(cfg),
            "--log-level",
            "warn",
            *extra,
        ]
        if port:
            cmd += ["--app-port", str(port)]
        p = procs.spawn(name, cmd, env)
        started.append(p)
        await wait_ready(f"http://127.0.0.1:{http}/v1.0/healthz/outbound")
        ports[app_id], pids[f"daprd-{app_id}"] = http, p.pid
    return f"http://127.0.0.1:{ports['appA']}/v1.0/invoke/appB/method/raw", pids, started


def table(results: dict[str, Any], rates: list[float]) -> str:
    lines = [
        f"1 KB bodies, {CONNECTIONS} connections; latency from each request's scheduled send time;",
        "'+p90'/'+p99' = minus the direct app->app baseline at the same rate; medians of"
        " the repetitions; SAT = fell behind (percentiles cover only the requests sent)",
        f"{'path':<16}{'rate':>6}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'+p90':>8}{'+p99':>8}"
        f"{'got/s':>7}{'err':>5}  cpu % of one core (cpu ms per request, % of time runnable"
        " but waiting for a CPU)",
    ]
    for rate in rates:
        key = str(int(rate))
        base = results["direct"]["fixed"][key]
        for name, r in results.items():
            f = r["fixed"][key]
            add90 = f["p90_ms"] - base["p90_ms"]
            add99 = f["p99_ms"] - base["p99_ms"]
            got = max(f["achieved_rps"], 1e-9)
            cpu = ", ".join(
                f"{k} {v}% ({v * 10 / got:.2f} ms/req, waited {f['runqueue_wait_pct'][k]}%)"
                for k, v in f["cpu_pct"].items()
            )
            sat = " SAT" if f["saturated"] else ""
            lines.append(
                f"{name:<16}{rate:>6.0f}{f['p50_ms']:>9.2f}{f['p90_ms']:>9.2f}{f['p99_ms']:>9.2f}"
                f"{add90:>+8.2f}{add99:>+8.2f}{f['achieved_rps']:>7.0f}{f['errors']:>5.0f}{sat}"
                f"  {cpu}"
            )
    lines.append("max throughput (closed loop, 16 connections):")
    for name, r in results.items():
        m = r["max"]
        cpu = ", ".join(f"{k} {v}" for k, v in m["cpu_pct"].items())
        per_req = ", ".join(
            f"{k} {v * 10 / max(m['rps'], 1e-9):.2f}" for k, v in m["cpu_pct"].items()
        )
        lines.append(
            f"{name:<16}{m['rps']:>8.0f} req/s  err {m['errors']:.0f}  cpu % {cpu}"
            f"  (cpu ms/req: {per_req})"
        )
    lines.append("Dapr's published figure (Go, 2 sidecars, 1,000 rps): +1.4 ms p90, +2.1 ms p99")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-invoke-") as tmpdir:
        tmp = Path(tmpdir)
        procs = Procs(tmp)
        try:
            app_port = free_port()
            app = procs.spawn(
                "app", [sys.executable, str(APP), str(app_port)], {"APP_NAME": "appB"}
            )
            await wait_ready(f"http://127.0.0.1:{app_port}/health")
            results: dict[str, Any] = {}
            results["direct"] = await measure(
                f"http://127.0.0.1:{app_port}/raw", {"app": app.pid, "loadgen": os.getpid()}, args
            )
            for mtls in (False, True):
                url, pids, started = await sidecars(procs, app_port, mtls, tmp, args.profile_dir)
                results["sidecars-mtls" if mtls else "sidecars-plain"] = await measure(
                    url, {**pids, "app": app.pid, "loadgen": os.getpid()}, args
                )
                for p in started:
                    procs.stop(p)
        finally:
            procs.stop_all()
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--rates",
        type=lambda v: [float(x) for x in v.split(",")],
        default=[1000.0, 200.0],
        help="comma-separated fixed rates (req/s); default 1000,200",
    )
    ap.add_argument("--seconds", type=float, default=4, help="per fixed-rate repetition")
    ap.add_argument("--max-seconds", type=float, default=3, help="per max-throughput repetition")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per measurement (median)")
    ap.add_argument(
        "--profile-dir", type=Path, default=None, help="run each daprd under cProfile (CPU time)"
    )
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "invoke.json"))
    ns = ap.parse_args()
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    load_before = os.getloadavg()
    if ns.profile_dir is not None:
        ns.profile_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with runner:
        res = runner.run(main(ns))
    elapsed = time.monotonic() - started
    print(
        f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} "
        f"({os.cpu_count()} cpus; other processes share them); took {elapsed:.0f} s"
    )
    print(table(res, ns.rates))
    out = Path(ns.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "invoke",
                "rates": ns.rates,
                "seconds": ns.seconds,
                "max_seconds": ns.max_seconds,
                "reps": ns.reps,
                "statistic": "median of reps",
                "body_bytes": len(BODY),
                "connections": CONNECTIONS,
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "loadavg_before": load_before,
                "results": res,
                "loadavg_after": os.getloadavg(),
                "elapsed_s": round(elapsed, 1),
                "dapr_published": {"added_p90_ms": 1.4, "added_p99_ms": 2.1, "rate": 1000},
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")
