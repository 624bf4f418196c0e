"""SignCertificate throughput and latency through the real gRPC API of a real ``sentry`` process.

Quick Python-only check (not the Go comparison: that is bench/vs_go.py, `make bench-go`).

For 1, 16 and 128 concurrent clients, twice: with persistent connections (one TLS connection per
client, reused) and with a new TLS connection per request (what Dapr sidecars do). The same run
measures the in-process crypto ceiling (``bench/pki.py``: CSR parse + proof of possession + sign,
P-256 issuer, one core) and prints the ratio. Sentry runs one event loop, so it uses one core; the
load generator runs in this process on the other core.

    .venv/bin/python bench/sentry_sign.py [--seconds 5] [--ceiling-seconds 8] [--profile]

Writes ``bench/results/sentry_sign.json``. ``--profile`` runs sentry under cProfile and prints
where its time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pstats
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from grpclib.client import Channel

sys.path.insert(0, str(Path(__file__).parent))
import pki as pki_bench

from pysentry.pki.csr import build_csr
from pysentry.pki.keys import generate_key
from pysentry.proto.dapr.proto.sentry.v1 import sentry_pb2
from pysentry.proto.dapr.proto.sentry.v1.sentry_grpc import CAStub

CONCURRENCY = (1, 16, 128)
OUT = Path(__file__).parent / "results" / "sentry_sign.json"
CSR_POOL = 256


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def client_context(anchors: bytes) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata=anchors.decode())
    ctx.set_alpn_protocols(["h2"])
    return ctx


class Sentry:
    def __init__(self, workdir: Path, profile: Path | None) -> None:
        self.port, self.healthz = free_port(), free_port()
        prefix = [sys.executable]
        if profile is not None:
            prefix += ["-m", "cProfile", "-o", str(profile)]
        cmd = [
            *prefix,
            "-m",
            "pysentry.sentry.main",
            "--issuer-credentials",
            str(workdir / "c"),
            "--listen-address",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--healthz-port",
            str(self.healthz),
            "--enable-metrics=false",
            "--log-level",
            "warn",
            "--max-concurrent-signs",
            "4096",
            "--config",
            os.devnull,
        ]
        self.log = (workdir / "sentry.log").open("wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{self.healthz}/healthz", timeout=1)
                break
            if self.proc.poll() is not None:
                raise SystemExit(f"sentry exited: {(workdir / 'sentry.log').read_text()}")
            time.sleep(0.05)
        self.anchors = (workdir / "c" / "ca.crt").read_bytes()

    def cpu_seconds(self) -> float:
        """User + system CPU time the sentry process has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.log.close()


async def _close(chan: Channel) -> None:
    proto = chan._protocol
    chan.close()
    if proto is None:
        return
    lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    original = proto.connection_lost

    def connection_lost(exc: BaseException | None) -> None:
        original(exc)
        if not lost.done():
            lost.set_result(None)

    proto.connection_lost = connection_lost  # type: ignore[method-assign]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(lost, 5)


async def run_case(
    sentry: Sentry,
    requests: list[sentry_pb2.SignCertificateRequest],
    clients: int,
    persistent: bool,
    seconds: float,
) -> dict[str, Any]:
    ctx = client_context(sentry.anchors)
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def client(index: int) -> None:
        nonlocal errors
        chan = Channel("127.0.0.1", sentry.port, ssl=ctx) if persistent else None
        n = index
        try:
            while time.perf_counter() < stop_at:
                request = requests[n % len(requests)]
                n += clients
                start = time.perf_counter()
                c = chan or Channel("127.0.0.1", sentry.port, ssl=ctx)
                try:
                    await CAStub(c).SignCertificate(request, timeout=30)
                    latencies.append(time.perf_counter() - start)
                except Exception:
                    errors += 1
                finally:
                    if chan is None:
                        await _close(c)
        finally:
            if chan is not None:
                await _close(chan)

    began, cpu_before = time.perf_counter(), sentry.cpu_seconds()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed, cpu = time.perf_counter() - began, sentry.cpu_seconds() - cpu_before
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else float("nan")

    return {
        "clients": clients,
        "connections": "persistent" if persistent else "per-request",
        "certs": len(lat),
        "errors": errors,
        "seconds": round(elapsed, 2),
        "certs_per_s": round(len(lat) / elapsed, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "mean_ms": round(statistics.fmean(lat) * 1000, 2) if lat else float("nan"),
        "server_cpu_share": round(cpu / elapsed, 2),
        "server_cpu_ms_per_cert": round(cpu / len(lat) * 1000, 3) if lat else float("nan"),
        "server_capacity_per_core": round(len(lat) / cpu, 1) if cpu > 0 else float("nan"),
    }


_GROUPS = (  # (label, substrings of "file:function"), first match wins
    (
        "crypto: sign (cryptography)",
        ("create_x509_certificate", "pki/profiles.py", "hazmat", "x509."),
    ),
    ("crypto: CSR parse + PoP", ("pki/csr.py", "pki/pem.py", "pki/keys.py", "CertificateSigning")),
    ("idle (epoll wait)", ("select.epoll", "'poll'", "run_once")),
    ("socket syscalls", ("_socket.socket", "'send'", "'recv", "sock_")),
    ("TLS (OpenSSL + asyncio/uvloop ssl)", ("_ssl.", "sslproto", "ssl.py", "uvloop")),
    ("HTTP/2 (h2, hpack, hyperframe)", ("/h2/", "/hpack/", "/hyperframe/")),
    ("grpclib", ("/grpclib/",)),
    ("protobuf", ("protobuf", "_pb2", "upb")),
    ("asyncio core", ("asyncio/",)),
    ("pysentry sentry", ("pysentry/sentry/",)),
)


def profile_groups(stats: pstats.Stats) -> str:
    totals: dict[str, float] = {}
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, _line, func), (_cc, _nc, tottime, _ct, _callers) in raw.items():
        key = f"{filename}:{func}"
        label = next((g for g, subs in _GROUPS if any(x in key for x in subs)), "other")
        totals[label] = totals.get(label, 0.0) + tottime
    busy = sum(v for k, v in totals.items() if not k.startswith("idle"))
    lines = ["sentry CPU by component (cProfile tottime; profiler overhead inflates Python code):"]
    for label, value in sorted(totals.items(), key=lambda kv: -kv[1]):
        share = "" if label.startswith("idle") else f"{value / busy:6.1%}"
        lines.append(f"  {label:<38} {value:7.2f} s {share}")
    return "\n".join(lines)


def format_table(report: dict[str, Any]) -> str:
    ceiling = report["ceiling_csr_sign_per_s"]
    lines = [
        f"{'connections':<12} {'clients':>7} {'certs/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'errors':>6} {'of ceiling':>10} {'srv cpu':>8} {'srv ms/cert':>11} "
        f"{'srv cap/s':>9} {'cap/ceil':>8}"
    ]
    for r in report["results"]:
        lines.append(
            f"{r['connections']:<12} {r['clients']:>7} {r['certs_per_s']:>9.0f} "
            f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>6} "
            f"{r['certs_per_s'] / ceiling:>10.0%} {r['server_cpu_share']:>8.0%} "
            f"{r['server_cpu_ms_per_cert']:>11.3f} {r['server_capacity_per_core']:>9.0f} "
            f"{r['server_capacity_per_core'] / ceiling:>8.0%}"
        )
    lines.append(
        f"ceiling cost: {1000 / ceiling:.3f} ms of CPU per cert. 'srv cpu': share of one "
        "core the sentry process used; 'srv cap/s': certs/s it would sign with a whole "
        "core (1 / its CPU per cert); load average "
        f"{report['machine']['loadavg_1m_before_after']}"
    )
    lines.append(
        f"in-process ceiling (csr+sign, P-256 issuer, 1 core, median): {ceiling:.0f}/s; "
        f"best persistent = {report['best_persistent_ratio']:.0%} of it end to end, "
        f"server capacity {report['best_persistent_server_capacity_ratio']:.0%} of it"
    )
    return "\n".join(lines)


async def measure(args: argparse.Namespace, sentry: Sentry) -> list[dict[str, Any]]:
    requests = [
        sentry_pb2.SignCertificateRequest(
            id=f"app{i}", namespace="default", certificate_signing_request=build_csr(generate_key())
        )
        for i in range(CSR_POOL)
    ]
    await run_case(sentry, requests, 4, True, 1.0)  # warm-up
    results = []
    for persistent in (True, False):
        for clients in CONCURRENCY:
            result = await run_case(sentry, requests, clients, persistent, args.seconds)
            print(f"  {result}", flush=True)
            results.append(result)
    return results


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per case (default 5)")
    parser.add_argument("--ceiling-seconds", type=float, default=8.0)
    parser.add_argument("--profile", action="store_true", help="run sentry under cProfile")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    print("measuring the in-process crypto ceiling ...", flush=True)
    ceiling = pki_bench.measure_ceiling(args.ceiling_seconds)
    ceiling_rate = float(ceiling["ceiling"]["csr_sign_per_s_p256_issuer"])
    with tempfile.TemporaryDirectory(prefix="bench-sentry-") as tmp:
        profile = Path(tmp) / "sentry.prof" if args.profile else None
        sentry = Sentry(Path(tmp), profile)
        try:
            results = _run(measure(args, sentry))
        finally:
            sentry.stop()
        if profile is not None:
            stats = pstats.Stats(str(profile))
            stats.sort_stats("tottime").print_stats(20)
            print(profile_groups(stats))
    persistent = [r for r in results if r["connections"] == "persistent"]
    best = max(r["certs_per_s"] for r in persistent)
    best_capacity = max(r["server_capacity_per_core"] for r in persistent)
    report = {
        "measured_at": ceiling["measured_at"],
        "machine": ceiling["machine"],
        "seconds_per_case": args.seconds,
        "ceiling_csr_sign_per_s": ceiling_rate,
        "ceiling": ceiling["ceiling"],
        "best_persistent_ratio": round(best / ceiling_rate, 3),
        "best_persistent_server_capacity_ratio": round(best_capacity / ceiling_rate, 3),
        "profiled": args.profile,
        "results": results,
    }
    print(format_table(report))
    if not args.profile:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
