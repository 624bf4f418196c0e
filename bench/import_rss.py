"""Sentry's idle memory floor: the RSS of a Python process as it imports the libraries DESIGN.md
chooses, one layer at a time, then ``pysentry.sentry.main``, against the idle RSS of Go Dapr's
``sentry`` (issue 13's "idle RSS" goal) measured in the same run. Opt-in; not a test.

Each row is a fresh interpreter (this venv's) that imports its layer and everything above it and
prints its own ``VmRSS``; rows run ``--reps`` times, interleaved, medians shown. The Go Sentry
is started with throwaway credentials on 127.0.0.1 and read ``--settle`` seconds after its
``/healthz`` answers (``bench/vs_go_stack.py``, as ``bench/vs_go.py`` does).

    .venv/bin/python bench/import_rss.py [--reps 3] [--settle 3]
                                        [--out bench/results/import_rss.json]

Like ``bench/vs_go.py`` it runs in a private network namespace with only loopback (root), or
with ``--host-network`` on the host's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(BENCH), str(ROOT)]

import tools as bench_tools  # noqa: E402
from vs_go_procs import Procs, memory_kib  # noqa: E402
from vs_go_stack import Impl, start_sentry  # noqa: E402

from pysentry.testing import TestCA  # noqa: E402

LAYERS = (
    ("the interpreter", ""),
    ("+ asyncio, ssl", "import asyncio, ssl"),
    (
        "+ cryptography (x509, ec)",
        "import cryptography.x509, cryptography.hazmat.primitives.asymmetric.ec",
    ),
    ("+ pydantic", "import pydantic"),
    ("+ prometheus-client", "import prometheus_client"),
    ("+ grpclib, h2, protobuf", "import grpclib.server, h2.connection, google.protobuf.message"),
    ("+ uvloop, PyYAML", "import uvloop, yaml"),
    ("+ pysentry.sentry.main", "import pysentry.sentry.main"),
)
PRINT_RSS = "print(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1])"


def layer_kib(upto: int) -> int:
    code = "\n".join(stmt for _, stmt in LAYERS[: upto + 1] if stmt)
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\n{PRINT_RSS}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(done.stdout.strip())


def go_sentry_kib(tools: bench_tools.Tools, tmp: Path, settle: float) -> int:
    creds = tmp / "creds"
    creds.mkdir(mode=0o700, parents=True)
    TestCA.create("localhost").write_credentials(creds)
    procs = Procs(tmp)
    try:
        sentry = start_sentry(procs, Impl("go", tools.go_sentry, tools.go_daprd), creds, "go")
        time.sleep(settle)
        return memory_kib(sentry.proc.pid)["rss_kib"]
    finally:
        procs.stop_all()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "import_rss.json")
    bench_tools.netns_flags(ap)
    args = ap.parse_args(argv)
    tools = bench_tools.tools_on_loopback(__file__, argv, args)
    loads = [os.getloadavg()[0]]
    rows: dict[str, list[int]] = {name: [] for name, _ in LAYERS}
    go: list[int] = []
    with tempfile.TemporaryDirectory(prefix="bench-import-rss-") as tmpdir:
        for rep in range(args.reps):
            go.append(go_sentry_kib(tools, Path(tmpdir) / str(rep), args.settle))
            for i, (name, _) in enumerate(LAYERS):
                rows[name].append(layer_kib(i))
    loads.append(os.getloadavg()[0])
    go_mib = statistics.median(go) / 1024
    width = max(len(name) for name in rows)
    print(f"{'process':<{width}}  RSS MiB  vs Go sentry")
    print(f"{'-' * width}  -------  -----------")
    print(f"{'Go Dapr sentry, idle':<{width}}  {go_mib:7.1f}  1.00")
    for name, kib in rows.items():
        mib = statistics.median(kib) / 1024
        print(f"{name:<{width}}  {mib:7.1f}  {mib / go_mib:.2f}")
    print(f"medians of {args.reps}; 1-min load average {loads[0]:.2f} before, {loads[1]:.2f} after")
    report = {
        "benchmark": "import_rss",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "go_sentry_rss_kib": go,
        "layers_rss_kib": rows,
        "load_average_1min": loads,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
