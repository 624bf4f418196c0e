"""The load generators of ``bench/vs_go.py``: wrk (max req/s), vegeta (fixed rates), ghz (Sentry).

Each runner returns a dict with the numbers, the exact command (``cmd``) and the CPU seconds the
watched processes used while it ran (``cpu_s``, from ``/proc``: a process and its descendants).
Every run is bounded: the tool's own duration plus a subprocess timeout.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vs_go_procs import cpu_seconds

from pysentry.pki.csr import build_csr
from pysentry.pki.keys import generate_key

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "proto"
SENTRY_PROTO = PROTO_ROOT / "dapr" / "proto" / "sentry" / "v1" / "sentry.proto"
SIGN_CALL = "dapr.proto.sentry.v1.CA/SignCertificate"
BODY = b"x" * 1024
GRACE_S = 30.0
#: vegeta's workers (requests in flight) are capped: past saturation, an open loop with no cap
#: opens thousands of connections and every request times out; with it, the achieved rate drops.
MAX_IN_FLIGHT = 128
CUT_AT_END = (
    "use of closed network connection",
    "context canceled",
    "client connection is closing",
)  # how long past its duration a tool may run before it is killed

#: POST 1 KB, and print one JSON line of wrk's summary when done (latencies in microseconds).
WRK_LUA = """\
wrk.method = "POST"
wrk.body = string.rep("x", 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def _run(cmd: list[str], seconds: float, pids: Sequence[int]) -> tuple[str, float, float]:
    """(stdout, wall seconds, CPU seconds of ``pids``) of one bounded tool run."""
    before = sum(cpu_seconds(p) for p in pids)
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + GRACE_S)
    wall = time.perf_counter() - started
    cpu = sum(cpu_seconds(p) for p in pids) - before
    if done.returncode != 0:
        raise RuntimeError(
            f"{cmd[0]} failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-2000:]}"
        )
    return done.stdout, wall, cpu


def wrk(tool: Path, lua: Path, url: str, pids: Sequence[int], seconds: float) -> dict[str, Any]:
    """Closed loop: 2 threads, 16 connections, 1 KB POSTs for ``seconds``."""
    cmd = [str(tool), "-t2", "-c16", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(lua), url]
    out, wall, cpu = _run(cmd, seconds, pids)
    summary = json.loads(out.strip().splitlines()[-1])
    duration = summary["duration_us"] / 1e6
    errors = sum(summary[k] for k in ("connect", "read", "write", "status", "timeout"))
    ok = summary["requests"] - summary["status"]
    return {
        "rps": round(ok / duration, 1),
        "requests": summary["requests"],
        "errors": errors,
        "error_kinds": {k: summary[k] for k in ("connect", "read", "write", "status", "timeout")},
        "p50_ms": summary["p50_us"] / 1000,
        "p99_ms": summary["p99_us"] / 1000,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 3),
        "cmd": cmd,
    }


def vegeta(
    tool: Path, tmp: Path, url: str, pids: Sequence[int], *, rate: int, seconds: float
) -> dict[str, Any]:
    """Open loop at ``rate`` req/s for ``seconds`` (1 KB POSTs); vegeta's JSON report."""
    body, targets, results = tmp / "body-1k.bin", tmp / "targets.txt", tmp / "vegeta.bin"
    body.write_bytes(BODY)
    targets.write_text(f"POST {url}\nContent-Type: application/octet-stream\n")
    cmd = [str(tool), "attack", f"-targets={targets}", f"-body={body}", f"-rate={rate}/1s"]
    cmd += [f"-duration={seconds:g}s", "-timeout=10s", f"-max-workers={MAX_IN_FLIGHT}"]
    cmd += [f"-output={results}"]
    _, wall, cpu = _run(cmd, seconds, pids)
    report = subprocess.run(
        [str(tool), "report", "-type=json", str(results)],
        capture_output=True,
        text=True,
        timeout=GRACE_S,
        check=True,
    )
    r = json.loads(report.stdout)
    lat = r["latencies"]
    codes = {str(k): int(v) for k, v in (r.get("status_codes") or {}).items()}
    ok = codes.get("200", 0)
    return {
        "rate": rate,
        "requests": r["requests"],
        "ok": ok,
        "errors": r["requests"] - ok,
        "status_codes": codes,
        "error_messages": (r.get("errors") or [])[:5],
        "attack_rate": round(r["rate"], 1),
        "achieved_rps": round(r["throughput"], 1),
        "p50_ms": lat["50th"] / 1e6,
        "p90_ms": lat["90th"] / 1e6,
        "p99_ms": lat["99th"] / 1e6,
        "max_ms": lat["max"] / 1e6,
        "bytes_in_per_request": round(r["bytes_in"]["mean"], 1),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 3),
        "cpu_ms_per_request": round(1000 * cpu / ok, 3) if ok else None,
        "cmd": cmd,
    }


def sign_requests(tmp: Path, count: int) -> Path:
    """``count`` distinct token-less SignCertificate requests (fresh P-256 keys, ids
    ``bench-0``..), as ghz's JSON data file: ghz sends them round-robin."""
    rows = [
        {
            "id": f"bench-{i}",
            "namespace": "default",
            "trust_domain": "public",
            "certificate_signing_request": base64.b64encode(build_csr(generate_key())).decode(),
        }
        for i in range(count)
    ]
    path = tmp / "sign-requests.json"
    path.write_text(json.dumps(rows))
    return path


def ghz(
    tool: Path, data: Path, port: int, concurrency: int, seconds: float, pids: Sequence[int]
) -> dict[str, Any]:
    """SignCertificate over TLS at ``concurrency`` workers, one connection each."""
    cmd = [str(tool), "--proto", str(SENTRY_PROTO), "--import-paths", str(PROTO_ROOT)]
    cmd += ["--call", SIGN_CALL, "--skipTLS", "--data-file", str(data)]
    cmd += ["-c", str(concurrency), "--connections", str(concurrency), "-z", f"{seconds:g}s"]
    cmd += ["--timeout", "20s", "-O", "json", f"127.0.0.1:{port}"]
    out, wall, cpu = _run(cmd, seconds, pids)
    r = json.loads(out)
    codes = {str(k): int(v) for k, v in (r.get("statusCodeDistribution") or {}).items()}
    ok = codes.get("OK", 0)
    messages = {str(k): int(v) for k, v in (r.get("errorDistribution") or {}).items()}
    # ghz closes its connections when -z runs out: the calls in flight then fail on the client
    # side only ("use of closed network connection"). At most one per worker; not errors.
    cut = sum(v for k, v in messages.items() if any(m in k for m in CUT_AT_END))
    cut = min(cut, concurrency)
    lat = {int(d["percentage"]): d["latency"] / 1e6 for d in r.get("latencyDistribution") or []}
    total_s = r["total"] / 1e9
    return {
        "concurrency": concurrency,
        "count": r["count"],
        "ok": ok,
        "errors": r["count"] - ok - cut,
        "cut_at_end": cut,
        "status_codes": codes,
        "error_messages": dict(list(messages.items())[:3]),
        "certs_per_s": round(ok / total_s, 1) if total_s else 0.0,
        "p50_ms": lat.get(50),
        "p99_ms": lat.get(99),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 3),
        "cpu_ms_per_cert": round(1000 * cpu / ok, 3) if ok else None,
        "cpu_share": round(cpu / total_s, 2) if total_s else None,
        "cmd": cmd,
    }
