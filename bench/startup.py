"""daprd start-up, a quick check (Python-side only; opt-in, not part of the test suite).

Starts a real pysentry Sentry on 127.0.0.1 (a throwaway CA) before each daprd, as
``bench/vs_go.py`` does (``--reuse-sentry``: one Sentry for all runs; a forked Sentry worker's
first request is slower, so a reused Sentry measures a faster start than the harness), then execs
the ``daprd`` console script ``--runs`` times with mTLS on and a Configuration file (as ``dapr
run`` passes one), and reports medians of:

* ``identity_s``: exec -> the log line ``Security is initialized successfully`` (the first SVID
  is loaded and the TLS contexts are built from it), read from daprd's stdout as it is written;
* ``identity_cpu_s``: daprd's user+system CPU time at that moment (/proc, 10 ms ticks: less
  sensitive to the machine's load than the wall time);
* ``healthz_s``: exec -> the first 2xx from ``GET /v1.0/healthz`` (polled every 2 ms from the
  identity line on), and ``healthz_cpu_s``, daprd's CPU time then;
* ``rss_mib``: VmRSS of the idle daprd ``--settle`` seconds after healthz answered;
* ``import_s``: ``python -X importtime -c "import pysentry.sidecar.main"`` (cumulative, top level)
  and ``python_s``: exec -> exit of ``python -c pass`` (the interpreter's own floor).

    .venv/bin/python bench/startup.py [--runs 9] [--settle 1.0] [--out bench/results/startup.json]
    .venv/bin/python bench/startup.py --compare /tmp/before/src   # before/after, interleaved

``--compare SRC`` runs daprd from another checkout's ``src/`` (``PYTHONPATH=SRC``) in turn with
this one, run by run under the same load, and reports both medians.

Both source trees are compiled to bytecode first (``compileall``), as ``pip install`` does: with
``PYTHONDONTWRITEBYTECODE=1`` in the environment (set in this project's agent shells), or a fresh
``git archive``, every start would otherwise compile the changed modules from source again, and
the numbers would be Python's compiler, not daprd's start-up.

Nothing is pinned and the load generator is this process: the 1-minute load average at start and
end is in the JSON. Prints one table and writes JSON.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import re
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from pysentry.testing import TestCA  # noqa: E402

BIN = Path(sys.executable).parent
IDENTITY_LINE = b"Security is initialized successfully"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthz(port: int) -> int:
    """Status code of ``GET /v1.0/healthz`` on 127.0.0.1, or 0 if nothing answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /v1.0/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            head = s.recv(64)
    except OSError:
        return 0
    m = re.match(rb"HTTP/1\.1 (\d{3})", head)
    return int(m.group(1)) if m else 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (clock ticks: 10 ms resolution)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_sentry(tmp: Path, pythonpath: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    creds = tmp / "creds"
    anchors = tmp / "anchors.pem"
    if not creds.exists():
        ca = TestCA.create("localhost")
        creds.mkdir(mode=0o700)
        ca.write_credentials(creds)
        anchors.write_bytes(ca.anchors_pem())
    config = tmp / "sentry.yaml"
    config.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: daprsystem\n"
        "spec:\n  mtls:\n    enabled: true\n    workloadCertTTL: 1h\n"
    )
    port, health = free_port(), free_port()
    cmd = [sys.executable, "-m", "pysentry.sentry.main", "--issuer-credentials", str(creds)]
    cmd += ["--config", str(config)]
    cmd += ["--port", str(port), "--healthz-port", str(health), "--metrics-port", str(free_port())]
    cmd += ["--listen-address", "127.0.0.1"]
    env = dict(os.environ, PYTHONPATH=pythonpath) if pythonpath else None
    with (tmp / "sentry.log").open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", health), timeout=1) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(16).startswith(b"HTTP/1.1 200"):
                    return proc, port, anchors
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"sentry did not become healthy in 30 s:\n{(tmp / 'sentry.log').read_text()}")


def one_daprd(
    tmp: Path, sentry_port: int, anchors: Path, settle: float, pythonpath: str = ""
) -> dict[str, float]:
    config = tmp / "daprd.yaml"
    config.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: appconfig\n"
        "spec:\n  nameResolution:\n    component: sqlite\n    configuration:\n"
        f"      connectionString: {tmp / 'nr.db'}\n"
    )
    http = free_port()
    cmd = [str(BIN / "daprd"), "--app-id", "bench", "--dapr-http-port", str(http)]
    cmd += ["--dapr-grpc-port", str(free_port()), "--dapr-internal-grpc-port", str(free_port())]
    cmd += ["--metrics-port", str(free_port()), "--config", str(config), "--enable-mtls"]
    cmd += ["--sentry-address", f"127.0.0.1:{sentry_port}", "--trust-anchors-file", str(anchors)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAPR_")}
    env["PYTHONUNBUFFERED"] = "1"
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    assert proc.stdout is not None
    out = b""
    identity = healthy = identity_cpu = healthy_cpu = 0.0
    try:
        deadline = t0 + 30
        while not identity and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    raise SystemExit(f"daprd exited early:\n{out.decode(errors='replace')}")
                out += chunk
                if IDENTITY_LINE in out:
                    identity = time.monotonic() - t0
                    identity_cpu = cpu_seconds(proc.pid)
        while not healthy and time.monotonic() < deadline and proc.poll() is None:
            if 200 <= healthz(http) < 300:
                healthy = time.monotonic() - t0
                healthy_cpu = cpu_seconds(proc.pid)
            else:
                time.sleep(0.002)
        if not identity or not healthy:
            proc.kill()
            out += proc.stdout.read()
            raise SystemExit(f"daprd not ready in 30 s:\n{out.decode(errors='replace')}")
        time.sleep(settle)
        rss = rss_mib(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    return {
        "identity_s": identity,
        "identity_cpu_s": identity_cpu,
        "healthz_s": healthy,
        "healthz_cpu_s": healthy_cpu,
        "rss_mib": rss,
    }


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def import_seconds(pythonpath: str = "") -> float:
    env = dict(os.environ, PYTHONPATH=pythonpath) if pythonpath else None
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import pysentry.sidecar.main"],
        capture_output=True,
        check=True,
        env=env,
    )
    last = done.stderr.decode().strip().splitlines()[-1]  # the top-level module comes last
    return int(last.split("|")[1]) / 1e6


def python_seconds() -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.monotonic() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--settle", type=float, default=1.0)
    parser.add_argument(
        "--sentry-pythonpath",
        default="",
        help="PYTHONPATH for Sentry only (e.g. a checkout of another commit's src/)",
    )
    parser.add_argument(
        "--compare",
        default="",
        help="another checkout's src/ (PYTHONPATH for daprd), run in turn with this one",
    )
    parser.add_argument(
        "--reuse-sentry",
        action="store_true",
        help="one Sentry for all runs (default: a fresh one before each daprd, as bench/vs_go.py)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "startup.json")
    args = parser.parse_args()
    for tree in (ROOT / "src", *([Path(args.compare)] if args.compare else [])):
        compileall.compile_dir(tree, quiet=1)
    load_start = os.getloadavg()[0]
    variants = {"this": ""} | ({"compare": args.compare} if args.compare else {})
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="startup-") as tmpdir:
        tmp = Path(tmpdir)
        sentry, port, anchors = start_sentry(tmp, args.sentry_pythonpath)
        try:
            for i in range(args.runs):
                order = list(variants.items())
                for name, path in order if i % 2 == 0 else order[::-1]:
                    if not args.reuse_sentry and (i or name != order[0][0]):
                        stop(sentry)
                        sentry, port, anchors = start_sentry(tmp, args.sentry_pythonpath)
                    run = one_daprd(tmp, port, anchors, args.settle, path)
                    run["import_s"] = import_seconds(path)
                    run["python_s"] = python_seconds()
                    runs[name].append(run)
        finally:
            stop(sentry)
    medians = {
        name: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
        for name, rs in runs.items()
    }
    result: dict[str, Any] = {
        "runs": runs["this"],
        "median": medians["this"],
        "load_avg_1m": {"start": load_start, "end": os.getloadavg()[0]},
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "sentry": "reused" if args.reuse_sentry else "fresh per run",
    }
    if args.compare:
        result["compare"] = {"src": args.compare, "runs": runs["compare"]}
        result["compare"]["median"] = medians["compare"]
    sentry_mode = "one Sentry" if args.reuse_sentry else "a fresh Sentry per run"
    print(f"daprd start-up, median of {args.runs} runs, {sentry_mode} (quick check)")
    columns = "".join(f"{name:>10}" for name in variants)
    print(f"{'metric':<34}{columns}")
    labels = {
        "identity_s": "exec -> identity ready (s)",
        "identity_cpu_s": "daprd CPU until identity ready (s)",
        "healthz_s": "exec -> /v1.0/healthz 2xx (s)",
        "healthz_cpu_s": "daprd CPU until healthz 2xx (s)",
        "import_s": "import pysentry.sidecar.main (s)",
        "python_s": "python -c pass (s)",
        "rss_mib": "idle VmRSS (MiB)",
    }
    for key, label in labels.items():
        print(f"{label:<34}" + "".join(f"{medians[name][key]:>10.3f}" for name in variants))
    print(f"load average (1 min): {load_start:.2f} -> {result['load_avg_1m']['end']:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
