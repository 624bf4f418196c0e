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
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(BENCH), str(ROOT)]

import tools as bench_tools  # noqa: E402
import vs_go_load as load  # noqa: E402
import vs_go_procs as procs_mod  # noqa: E402
import vs_go_table  # noqa: E402
from vs_go_procs import Impl, Procs, Stack  # noqa: E402

from pysentry.testing import TestCA  # noqa: E402

OUT = BENCH / "results" / "vs_go.json"
NETNS = 'ip link set lo up && exec "$0" "$@"'
Measure = Callable[[], dict[str, Any]]


def load1() -> float:
    return round(os.getloadavg()[0], 2)


class Run:
    """Records every measurement of every case, with load averages."""

    def __init__(self, reps: int) -> None:
        self.reps = reps
        self.cases: dict[str, dict[str, Any]] = {}

    def case(self, name: str, targets: dict[str, Measure | str]) -> None:
        """``reps`` rounds; each round measures every target once, the order rotating.
        A target given as a string is an error that kept it from starting."""
        print(f"case {name}:", flush=True)
        case: dict[str, Any] = {"loadavg_start": load1(), "reps": []}
        names = list(targets)
        for rep in range(self.reps):
            order = names[rep % len(names) :] + names[: rep % len(names)]
            for target in order:
                measure = targets[target]
                row: dict[str, Any] = {"target": target, "rep": rep, "loadavg_start": load1()}
                if isinstance(measure, str):
                    row["error"] = measure
                else:
                    try:
                        row["result"] = measure()
                    except Exception as err:  # recorded, and the run goes on
                        row["error"] = f"{type(err).__name__}: {err}"[:3000]
                row["loadavg_end"] = load1()
                case["reps"].append(row)
                print(f"  rep {rep} {target}: {vs_go_table.brief(row)}", flush=True)
        case["loadavg_end"] = load1()
        self.cases[name] = case


def startup_once(
    procs: Procs, impl: Impl, creds: Path, anchors: bytes, settle: float
) -> dict[str, Any]:
    """A fresh Sentry, then a fresh daprd: exec -> "Security is initialized successfully"
    (its log time stamp), exec -> healthz/outbound 204, and both RSS after ``settle`` s."""
    tag = f"{impl.name}-{time.monotonic_ns()}"
    sentry = procs_mod.start_sentry(procs, impl, creds, f"startup-sentry-{tag}")
    config = procs_mod.daprd_config(procs.tmp, procs.tmp / f"nr-startup-{impl.name}.db")
    try:
        d = procs_mod.spawn_daprd(
            procs,
            impl,
            "startup",
            None,
            sentry_port=sentry.port,
            anchors=anchors,
            config=config,
            name=f"startup-daprd-{tag}",
        )
        try:
            logged, observed = procs_mod.wait_ready_line(d.proc)
            procs_mod.wait_outbound(d)
            outbound = time.time() - d.proc.exec_wall
            time.sleep(settle)
            daprd_mem = procs_mod.memory_kib(d.proc.pid)
            sentry_mem = procs_mod.memory_kib(sentry.proc.pid)
        finally:
            d.proc.stop()
    finally:
        sentry.proc.stop()
    return {
        "identity_ready_s": round(logged, 4),
        "identity_seen_s": round(observed, 4),
        "outbound_ready_s": round(outbound, 4),
        "daprd_memory": daprd_mem,
        "sentry_memory": sentry_mem,
        "settle_s": settle,
    }


def start_stacks(
    procs: Procs, impls: list[Impl], creds: dict[str, Path], anchors: bytes, app_port: int
) -> dict[str, Stack | str]:
    stacks: dict[str, Stack | str] = {}
    for impl in impls:
        try:
            stacks[impl.name] = procs_mod.start_stack(
                procs, impl, creds[impl.name], anchors, app_port
            )
        except Exception as err:
            stacks[impl.name] = f"{impl.name} stack did not start: {err}"[:3000]
            print(stacks[impl.name], file=sys.stderr, flush=True)
    return stacks


def run_all(args: argparse.Namespace, tools: bench_tools.Tools, tmp: Path) -> dict[str, Any]:
    env = {"PYTHONPATH": str(args.pysentry_src.resolve())} if args.pysentry_src else {}
    impls = [
        Impl("go", tools.go_sentry, tools.go_daprd),
        Impl("pysentry", procs_mod.BIN / "sentry", procs_mod.BIN / "daprd", env),
    ]
    ca = TestCA.create("localhost")
    anchors = ca.anchors_pem()
    creds = {}
    for impl in impls:
        creds[impl.name] = tmp / f"creds-{impl.name}"
        creds[impl.name].mkdir(mode=0o700)
        ca.write_credentials(creds[impl.name])
    lua = tmp / "post-1k.lua"
    lua.write_text(load.WRK_LUA)
    sign_data = load.sign_requests(tmp, args.csrs)
    run = Run(args.reps)
    procs = Procs(tmp)
    secs = args.seconds
    try:
        for impl in impls:  # untimed: the page cache and Python's bytecode cache get warm
            startup_once(procs, impl, creds[impl.name], anchors, 0.0)
        run.case(
            "startup",
            {
                i.name: partial(startup_once, procs, i, creds[i.name], anchors, args.settle)
                for i in impls
            },
        )
        app_port = procs_mod.free_port()
        echo = procs.spawn("echo", [str(tools.echo), str(app_port)])
        procs_mod.wait_http(echo, f"http://127.0.0.1:{app_port}/", (200,), timeout=10)
        stacks = start_stacks(procs, impls, creds, anchors, app_port)
        up = {n: s for n, s in stacks.items() if isinstance(s, Stack)}
        for st in up.values():  # warm-up: connections, TLS sessions, Python's caches
            load.wrk(tools.wrk, lua, st.invoke_url, [], seconds=1)
            load.ghz(tools.ghz, sign_data, st.sentry.port, 4, 1, [])
        # Where each invoke case sends its load, and whose CPU it counts.
        paths: dict[str, tuple[str, list[int]] | str] = {
            "direct": (f"http://127.0.0.1:{app_port}/echo", [echo.pid])
        }
        for n, got in stacks.items():
            paths[n] = (got.invoke_url, got.sidecar_pids()) if isinstance(got, Stack) else got

        def invoke_case(fn: Callable[[str, list[int]], dict[str, Any]]) -> dict[str, Measure | str]:
            return {n: p if isinstance(p, str) else partial(fn, *p) for n, p in paths.items()}

        run.case("invoke_max", invoke_case(partial(load.wrk, tools.wrk, lua, seconds=secs)))
        for rate in (200, 1000):
            fixed = partial(load.vegeta, tools.vegeta, tmp, rate=rate, seconds=secs)
            run.case(f"invoke_{rate}rps", invoke_case(fixed))
        for c in (16, 128):
            targets: dict[str, Measure | str] = {}
            for n, got in stacks.items():
                if isinstance(got, Stack):
                    pid, port = got.sentry.proc.pid, got.sentry.port
                    targets[n] = partial(load.ghz, tools.ghz, sign_data, port, c, secs, [pid])
                else:
                    targets[n] = got
            run.case(f"sentry_c{c}", targets)
        return {
            "cases": run.cases,
            "stacks": {n: "up" if isinstance(s, Stack) else s for n, s in stacks.items()},
        }
    finally:
        procs.stop_all()


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
        [str(procs_mod.BIN / "daprd"), "--version"],
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


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="per measurement (default 5)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per case and implementation")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds after start-up before RSS")
    ap.add_argument("--csrs", type=int, default=64, help="distinct CSRs ghz cycles through")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--pysentry-src", type=Path, default=None, help="put DIR first on PYTHONPATH")
    ap.add_argument("--host-network", action="store_true", help="do not enter a private netns")
    ap.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not (1 <= args.reps <= 20 and 0.5 <= args.seconds <= 120 and 1 <= args.csrs <= 10_000):
        ap.error(
            f"--reps {args.reps} / --seconds {args.seconds} / --csrs {args.csrs}: "
            "want 1..20 / 0.5..120 / 1..10000"
        )
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    try:
        tools = bench_tools.ensure_tools()
    except bench_tools.ToolError as err:
        print(f"bench/vs_go.py: {err}", file=sys.stderr)
        return 2
    if not args.host_network and not args.in_netns:
        probe = subprocess.run(
            ["unshare", "--net", "sh", "-c", "ip link set lo up"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if probe.returncode != 0:
            print(
                "bench/vs_go.py: cannot enter a private network namespace "
                f"({probe.stderr.strip()!r}): run as root (unshare --net needs CAP_SYS_ADMIN), "
                "or pass --host-network",
                file=sys.stderr,
            )
            return 2
        cmd = ["unshare", "--net", "sh", "-c", NETNS, sys.executable, __file__, *argv, "--in-netns"]
        os.execvp(cmd[0], cmd)
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
        result = run_all(args, tools, Path(tmpdir))
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
