"""daprd's app side alone (HTTP API + app channel), a quick check (opt-in; not a test).

One daprd with mTLS on (a real pysentry Sentry on 127.0.0.1) invokes its *own* app-id, so a call
is HTTP API -> direct messaging -> app channel -> the Go echo app of ``bench/go/echo``: no
sidecar-to-sidecar hop. Per repetition: ``wrk -t2 -c16`` for ``--seconds`` with a 1 KiB POST
(max req/s), then ``vegeta`` at 200 req/s for ``--seconds`` over 16 connections (p50/p99/max).
``--src A,B`` runs each given ``src/`` tree (e.g. a ``git archive`` of another commit) in turn,
interleaved, ``--reps`` times; the table shows medians. The 1-minute load average is recorded.

    .venv/bin/python bench/app_side.py [--src DIR[,DIR]] [--reps 3] [--seconds 8]
                                      [--profile-dir bench/results/profiles]
                                      [--out bench/results/app_side.json]

``--profile-dir`` records the first repetition's 200 req/s run of each tree with py-spy
(speedscope; needs ``py-spy`` in the venv; py-spy pauses the process to sample, so that
repetition's percentiles are left out of the medians).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from startup import BIN, ROOT, free_port, healthz, rss_mib, start_sentry
from tools import build_echo, build_loadgens, find_wrk, go_executable

LUA = 'wrk.method = "POST"\nwrk.body = string.rep("x", 1024)\n'
LUA += 'wrk.headers["Content-Type"] = "application/octet-stream"\n'


def one(
    src: str,
    tmp: Path,
    sentry: int,
    anchors: Path,
    tools: dict[str, Path],
    seconds: float,
    profile: Path | None,
) -> dict[str, Any]:
    app_port, http = free_port(), free_port()
    config = tmp / "daprd.yaml"
    config.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: appconfig\n"
        f"spec:\n  nameResolution:\n    component: sqlite\n    configuration:\n"
        f"      connectionString: {tmp / 'nr.db'}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAPR_")}
    if src:
        env["PYTHONPATH"] = src
    echo = subprocess.Popen(
        [str(tools["echo"]), str(app_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    cmd = [str(BIN / "daprd"), "--app-id", "solo", "--app-port", str(app_port)]
    cmd += ["--dapr-http-port", str(http), "--dapr-grpc-port", str(free_port())]
    cmd += ["--dapr-internal-grpc-port", str(free_port()), "--metrics-port", str(free_port())]
    cmd += ["--config", str(config), "--enable-mtls", "--sentry-address", f"127.0.0.1:{sentry}"]
    cmd += ["--trust-anchors-file", str(anchors)]
    with (tmp / "daprd.log").open("wb") as log:
        daprd = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    url = f"http://127.0.0.1:{http}/v1.0/invoke/solo/method/echo"
    try:
        deadline = time.monotonic() + 60
        while healthz(http) != 204:
            if time.monotonic() > deadline or daprd.poll() is not None:
                raise SystemExit(f"daprd not healthy:\n{(tmp / 'daprd.log').read_text()}")
            time.sleep(0.05)
        lua = tmp / "post.lua"
        lua.write_text(LUA)
        wrk = [str(tools["wrk"]), "-t2", "-c16", "-s", str(lua)]
        subprocess.run([*wrk, "-d2s", url], capture_output=True, check=True)  # warm-up
        load = os.getloadavg()[0]
        out = subprocess.run([*wrk, f"-d{seconds:g}s", url], capture_output=True, text=True).stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        body = tmp / "body.bin"
        body.write_bytes(b"x" * 1024)
        targets = f"POST {url}\nContent-Type: application/octet-stream\n@{body}\n".encode()
        spy = None
        if profile is not None:
            spy = subprocess.Popen(
                [
                    str(BIN / "py-spy"),
                    "record",
                    "-p",
                    str(daprd.pid),
                    "-d",
                    f"{seconds + 1:g}",
                    "-r",
                    "200",
                    "-f",
                    "speedscope",
                    "-o",
                    str(profile),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(0.5)
        attack = [str(tools["vegeta"]), "attack", "-rate", "200", f"-duration={seconds:g}s"]
        hits = subprocess.run([*attack, "-connections", "16"], input=targets, capture_output=True)
        report = subprocess.run(
            [str(tools["vegeta"]), "report", "-type", "json"],
            input=hits.stdout,
            capture_output=True,
        )
        if spy is not None:
            spy.wait(60)
        lat = json.loads(report.stdout)["latencies"]
        return {
            "max_rps": rps,
            "p50_ms": lat["50th"] / 1e6,
            "p99_ms": lat["99th"] / 1e6,
            "max_ms": lat["max"] / 1e6,
            "success": json.loads(report.stdout)["success"],
            "rss_mib": rss_mib(daprd.pid),
            "profiled": profile is not None,
            "load_avg_1m": [load, os.getloadavg()[0]],
        }
    finally:
        daprd.send_signal(signal.SIGTERM)
        daprd.wait(10)
        echo.kill()
        echo.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--src", default="", help="comma-separated src/ trees (default: installed)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--profile-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "app_side.json")
    args = ap.parse_args()
    go = go_executable()
    _, vegeta = build_loadgens(go)
    tools = {"wrk": find_wrk(), "vegeta": vegeta, "echo": build_echo(go)}
    srcs = args.src.split(",")
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in srcs}
    with tempfile.TemporaryDirectory(prefix="app-side-") as tmpdir:
        tmp = Path(tmpdir)
        sentry, port, anchors = start_sentry(tmp, srcs[0])
        try:
            for rep in range(args.reps):
                for n, src in enumerate(srcs):
                    profile = None
                    if args.profile_dir is not None and rep == 0:
                        args.profile_dir.mkdir(parents=True, exist_ok=True)
                        profile = args.profile_dir / f"daprd-app-side-200rps-{n}.speedscope.json"
                    runs[src].append(one(src, tmp, port, anchors, tools, args.seconds, profile))
        finally:
            sentry.terminate()
            sentry.wait(10)
    print("daprd app side (HTTP API + app channel), quick check; medians")
    print(f"{'src':<40}{'max req/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'RSS MiB':>9}")
    medians = {}
    for src, rs in runs.items():
        timed = [r for r in rs if not r["profiled"]] or rs
        m = {
            "max_rps": statistics.median(r["max_rps"] for r in rs),
            "p50_ms": statistics.median(r["p50_ms"] for r in timed),
            "p99_ms": statistics.median(r["p99_ms"] for r in timed),
            "rss_mib": statistics.median(r["rss_mib"] for r in rs),
        }
        medians[src or "installed"] = m
        print(
            f"{src or 'installed':<40}{m['max_rps']:>11.0f}{m['p50_ms']:>9.2f}"
            f"{m['p99_ms']:>9.2f}{m['rss_mib']:>9.1f}"
        )
    loads = [r["load_avg_1m"][0] for rs in runs.values() for r in rs]
    print(f"load average (1 min) during the runs: {min(loads):.2f} .. {max(loads):.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": runs, "median": medians}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
