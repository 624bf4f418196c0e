"""Go Dapr v1.16 against pysentry on this machine, in one run, with non-Python load generators.

Both implementations run side by side (Sentry + two daprds each, mTLS on, the callee's ACL
checked on every call) behind one Go echo app; the cases interleave them, 3 repetitions per
case and implementation by default, and the table shows medians and the pysentry/Go ratio
against issue 13's goals. Every repetition, the 1-minute load average around each case and
measurement, the versions and the exact commands go to ``bench/results/vs_go.json``.
``docs/benchmarks.md`` says what each metric means.

    .venv/bin/python bench/vs_go.py [--seconds 5] [--reps 3] [--out bench/results/vs_go.json]
                                    [--pysentry-src DIR] [--host-network]

Tools come from ``bench/tools.py`` (wrk from Debian; ghz, vegeta, the echo app and Go Dapr built
with Go, cached). The measurements then run in a private network namespace that has only
loopback (``unshare --net``, needs root), so nothing can reach beyond 127.0.0.1;
``--host-network`` skips that. ``--pysentry-src DIR`` puts DIR first on pysentry's
``PYTHONPATH`` (e.g. ``git archive <commit> src | tar -x -C /tmp/old`` for a before/after run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(BENCH), str(ROOT)]

import tools as bench_tools  # noqa: E402
import vs_go_cases  # noqa: E402
import vs_go_load as load  # noqa: E402
import vs_go_table  # noqa: E402
from vs_go_procs import BIN  # noqa: E402

OUT = BENCH / "results" / "vs_go.json"


def machine() -> dict[str, Any]:
    model = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        "unknown",
    )
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def pysentry_version(src: Path | None) -> str:
    env = dict(os.environ, PYTHONPATH=str(src.resolve())) if src else None
    done = subprocess.run(
        [str(BIN / "daprd"), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    where = f"checkout {commit.stdout.strip()}" + (f", src {src}" if src else "")
    return f"{done.stdout.strip()} ({where})"


def _cases(value: str) -> tuple[str, ...]:
    picked = tuple(c.strip() for c in value.split(",") if c.strip())
    unknown = [c for c in picked if c not in vs_go_cases.CASES]
    if unknown or not picked:
        raise argparse.ArgumentTypeError(
            f"--cases {value!r}: want a comma-separated subset of {','.join(vs_go_cases.CASES)}"
        )
    return picked


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="per measurement (default 5)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per case and implementation")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds after start-up before RSS")
    ap.add_argument("--csrs", type=int, default=64, help="distinct CSRs ghz cycles through")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--pysentry-src", type=Path, default=None, help="put DIR first on PYTHONPATH")
    ap.add_argument(
        "--pysentry-daprd-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for pysentry's daprd (repeatable), e.g. =--pysentry-fastpath=false",
    )
    ap.add_argument(
        "--pysentry-sentry-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for pysentry's Sentry (repeatable), e.g. =--workers=1",
    )
    ap.add_argument(
        "--cases",
        type=_cases,
        default=vs_go_cases.CASES,
        metavar="LIST",
        help=f"comma-separated subset of {','.join(vs_go_cases.CASES)} (default: all)",
    )
    ap.add_argument(
        "--impl",
        choices=("both", "go", "pysentry"),
        default="both",
        help="run only one implementation (for iterating; quote ratios from a run of both)",
    )
    ap.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="py-spy record (-r 200, speedscope) both pysentry daprds during the cpu case into DIR",
    )
    ap.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        metavar="DIR",
        help="also run pysentry from DIR (target pysentry-base), interleaved, for a before/after",
    )
    bench_tools.netns_flags(ap)
    ap.add_argument("--table-from", type=Path, default=None, help="re-print a JSON's table, no run")
    args = ap.parse_args(argv)
    if not (1 <= args.reps <= 20 and 0.5 <= args.seconds <= 120 and 1 <= args.csrs <= 10_000):
        ap.error(
            f"--reps {args.reps} / --seconds {args.seconds} / --csrs {args.csrs}: "
            "want 1..20 / 0.5..120 / 1..10000"
        )
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.table_from is not None:
        report = json.loads(args.table_from.read_text())
        print(vs_go_table.render(vs_go_table.summarize(report["cases"]), report))
        return 0
    tools = bench_tools.tools_on_loopback(__file__, argv, args)
    command = shlex.join(
        [
            sys.executable,
            str(Path(__file__).relative_to(ROOT))
            if Path(__file__).is_relative_to(ROOT)
            else __file__,
            *(a for a in argv if a != "--in-netns"),
        ]
    )
    started = time.monotonic()
    began = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-vs-go-") as tmpdir:
        result = vs_go_cases.run_all(args, tools, Path(tmpdir))
    elapsed = time.monotonic() - started
    summary = vs_go_table.summarize(result["cases"])
    report = {
        "benchmark": "vs_go",
        "command": command,
        "network_namespace": "private (loopback only)" if args.in_netns else "host",
        "started_utc": began,
        "elapsed_s": round(elapsed, 1),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "machine": machine(),
        "versions": {**tools.versions(), "pysentry": pysentry_version(args.pysentry_src)},
        "settings": {
            "seconds": args.seconds,
            "reps": args.reps,
            "settle_s": args.settle,
            "csrs": args.csrs,
            "statistic": "median of reps",
            "body_bytes": len(load.BODY),
            "cases": list(args.cases),
            "impl": args.impl,
            "profile": str(args.profile) if args.profile else None,
            "baseline_src": str(args.baseline_src) if args.baseline_src else None,
        },
        "stacks": result["stacks"],
        "summary": summary,
        "cases": result["cases"],
    }
    print()
    print(vs_go_table.render(summary, report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"took {elapsed:.0f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
