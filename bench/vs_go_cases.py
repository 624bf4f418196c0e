"""The cases of ``bench/vs_go.py``, interleaved: start-up and idle memory, invoke at max,
at 200 and at 1,000 req/s, and Sentry at c=16 and c=128.

Each case runs ``reps`` rounds; each round measures every target ("direct" where it applies,
"go", "pysentry") once, the order rotating between rounds. A target that could not start is
recorded with its error, and the run goes on with the others.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import tools as bench_tools
import vs_go_load as load
import vs_go_stack as stack_mod
import vs_go_table
from vs_go_procs import BIN, Procs, free_port, memory_kib, wait_http, wait_ready_line
from vs_go_stack import Impl, Sentry, Stack

from pysentry.testing import TestCA

Measure = Callable[[], dict[str, Any]]

#: ``--cases`` names: start-up and RSS, wrk at max, vegeta at 200 (p50/p99) and 1,000 req/s
#: (CPU per request), Sentry at c=16 and c=128.
CASES = ("startup", "max", "p99", "cpu", "sentry")
BASE = vs_go_table.BASE


def load1() -> float:
    return round(os.getloadavg()[0], 2)


class Run:
    """Records every measurement of every case, with the 1-minute load average around each."""

    def __init__(self, reps: int) -> None:
        self.reps = reps
        self.cases: dict[str, dict[str, Any]] = {}

    def case(self, name: str, targets: dict[str, Measure | str]) -> None:
        """A target given as a string is the error that kept it from starting."""
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
    sentry = stack_mod.start_sentry(procs, impl, creds, f"startup-sentry-{tag}")
    config = stack_mod.daprd_config(procs.tmp, procs.tmp / f"nr-startup-{impl.name}.db")
    try:
        d = stack_mod.spawn_daprd(
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
            logged, observed = wait_ready_line(d.proc)
            stack_mod.wait_outbound(d)
            outbound = time.time() - d.proc.exec_wall
            time.sleep(settle)
            daprd_mem = memory_kib(d.proc.pid)
            sentry_mem = memory_kib(sentry.proc.pid)
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


def _attempt(what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as err:
        message = f"{what} did not start: {err}"[:3000]
        print(message, file=sys.stderr, flush=True)
        return message


@dataclass
class Setup:
    impls: list[Impl]
    creds: dict[str, Path]
    anchors: bytes
    lua: Path
    sign_data: Path


def setup(args: Any, tools: bench_tools.Tools, tmp: Path) -> Setup:
    env = {"PYTHONPATH": str(args.pysentry_src.resolve())} if args.pysentry_src else {}
    impls = [
        Impl("go", tools.go_sentry, tools.go_daprd),
        Impl(
            "pysentry",
            BIN / "sentry",
            BIN / "daprd",
            env,
            tuple(args.pysentry_sentry_arg),
            tuple(args.pysentry_daprd_arg),
        ),
    ]
    impls = [i for i in impls if args.impl in ("both", i.name)]
    if args.baseline_src is not None:
        base = {"PYTHONPATH": str(args.baseline_src.resolve())}
        daprd_args, sentry_args = tuple(args.pysentry_daprd_arg), tuple(args.pysentry_sentry_arg)
        impls.append(Impl(BASE, BIN / "sentry", BIN / "daprd", base, sentry_args, daprd_args))
    ca = TestCA.create("localhost")
    creds = {}
    for impl in impls:
        creds[impl.name] = tmp / f"creds-{impl.name}"
        creds[impl.name].mkdir(mode=0o700)
        ca.write_credentials(creds[impl.name])
    lua = tmp / "post-1k.lua"
    lua.write_text(load.WRK_LUA)
    return Setup(impls, creds, ca.anchors_pem(), lua, load.sign_requests(tmp, args.csrs))


def _startup_case(run: Run, procs: Procs, s: Setup, settle: float) -> None:
    for impl in s.impls:  # untimed: the page cache and Python's bytecode cache get warm
        _attempt(
            f"{impl.name} warm-up",
            partial(startup_once, procs, impl, s.creds[impl.name], s.anchors, 0.0),
        )
    run.case(
        "startup",
        {
            i.name: partial(startup_once, procs, i, s.creds[i.name], s.anchors, settle)
            for i in s.impls
        },
    )


def profiled(
    out: Path, pids: list[int], seconds: float, measure: Callable[..., dict[str, Any]], *args: Any
) -> dict[str, Any]:
    """``measure(*args)`` with ``py-spy record -r 200 -f speedscope`` on each of ``pids`` for
    its duration (``--profile``: the CPU numbers of such a run include py-spy's pauses)."""
    spy = Path(sys.executable).with_name("py-spy")
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%H%M%S")
    record = [str(spy), "record", "-r", "200", "-f", "speedscope", "-d", str(int(seconds + 1))]
    spies = [
        subprocess.Popen(
            [*record, "-p", str(pid), "-o", str(out / f"daprd-{i}-{stamp}.json")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i, pid in enumerate(pids)
    ]
    try:
        result = measure(*args)
    finally:
        for p in spies:
            try:
                p.wait(timeout=seconds + 30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    result["profiles"] = sorted(str(f) for f in out.glob(f"daprd-*-{stamp}.json"))
    return result


def run_all(args: Any, tools: bench_tools.Tools, tmp: Path) -> dict[str, Any]:
    s = setup(args, tools, tmp)
    run = Run(args.reps)
    procs = Procs(tmp)
    secs = args.seconds
    try:
        if "startup" in args.cases:
            _startup_case(run, procs, s, args.settle)
        app_port = free_port()
        echo = procs.spawn("echo", [str(tools.echo), str(app_port)])
        wait_http(echo, f"http://127.0.0.1:{app_port}/", (200,), timeout=10)
        sentries: dict[str, Sentry | str] = {}
        stacks: dict[str, Stack | str] = {}
        for impl in s.impls:
            name = impl.name
            sentries[name] = _attempt(
                f"{name} Sentry",
                partial(stack_mod.start_sentry, procs, impl, s.creds[name], f"{name}-sentry"),
            )
            got = sentries[name]
            stacks[name] = (
                got
                if isinstance(got, str)
                else _attempt(
                    f"{name} daprds",
                    partial(stack_mod.start_stack, procs, impl, got, s.anchors, app_port),
                )
            )
        for st in stacks.values():  # warm-up: connections, TLS sessions, Python's caches
            if isinstance(st, Stack):
                load.wrk(tools.wrk, s.lua, st.invoke_url, [], seconds=1)
        for se in sentries.values():
            if isinstance(se, Sentry):
                load.ghz(tools.ghz, s.sign_data, se.port, 4, 1, [])
        # Where each invoke case sends its load, and whose CPU it counts.
        paths: dict[str, tuple[str, list[int]] | str] = {
            "direct": (f"http://127.0.0.1:{app_port}/echo", [echo.pid])
        }
        for n, st in stacks.items():
            paths[n] = st if isinstance(st, str) else (st.invoke_url, st.sidecar_pids())

        def invoke_case(fn: Callable[[str, list[int]], dict[str, Any]]) -> dict[str, Measure | str]:
            return {n: p if isinstance(p, str) else partial(fn, *p) for n, p in paths.items()}

        if "max" in args.cases:
            wrk = partial(load.wrk, tools.wrk, s.lua, seconds=secs)
            run.case("invoke_max", invoke_case(wrk))
        for case, rate in (("p99", 200), ("cpu", 1000)):
            if case not in args.cases:
                continue
            fixed = partial(load.vegeta, tools.vegeta, tmp, rate=rate, seconds=secs)
            measures = invoke_case(fixed)
            ours = paths.get("pysentry")
            if case == "cpu" and args.profile is not None and isinstance(ours, tuple):
                measures["pysentry"] = partial(profiled, args.profile, ours[1], secs, fixed, *ours)
            run.case(f"invoke_{rate}rps", measures)
        for c in (16, 128) if "sentry" in args.cases else ():
            targets: dict[str, Measure | str] = {}
            for n, se in sentries.items():
                targets[n] = (
                    se
                    if isinstance(se, str)
                    else partial(load.ghz, tools.ghz, s.sign_data, se.port, c, secs, [se.proc.pid])
                )
            run.case(f"sentry_c{c}", targets)
        return {
            "cases": run.cases,
            "stacks": {n: st if isinstance(st, str) else "up" for n, st in stacks.items()},
        }
    finally:
        procs.stop_all()
