"""``dapr run``: daprd and the app side by side; exit code, env, signals, no orphans."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pysentry.cli.console import CliError
from tests.integration.cli.conftest import Dapr, run_dapr

APP_SLEEPS = """
import os, subprocess, sys, time
child = subprocess.Popen(["sleep", "60"])
print("ready", os.getpid(), child.pid, flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_exit_code_env_and_prefix(dapr: Dapr) -> None:
    code = (
        "import os, sys; print('env', os.environ['APP_ID'], os.environ['DAPR_HTTP_PORT'], "
        "os.environ.get('APP_PORT')); sys.exit(3)"
    )
    result = dapr(
        "run",
        "--app-id",
        "myapp",
        "--app-port",
        "4999",
        "--dapr-http-port",
        "0",
        "--",
        sys.executable,
        "-c",
        code,
    )
    assert result.returncode == 3, result.output
    line = next(x for x in result.stdout.splitlines() if x.startswith("== APP == env"))
    _, app_id, http_port, app_port = line.split()[3:]
    assert app_id == "myapp" and int(http_port) > 0 and app_port == "4999"
    assert "Starting Dapr with id myapp" in result.stdout
    assert "The App process exited with error code: 3" in result.stdout
    assert "Exited Dapr successfully" in result.stdout
    assert 'msg="' in result.stdout  # daprd's own log lines are passed through


def test_app_command_without_double_dash(dapr: Dapr) -> None:
    result = dapr("run", "--app-id", "nodash", sys.executable, "-c", "print('no dash')")
    assert result.returncode == 0, result.output
    assert "== APP == no dash" in result.stdout
    assert "Exited App successfully" in result.stdout


def test_sigint_stops_app_daprd_and_grandchildren(home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DAPR_TRUST_ANCHORS"}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pysentry.cli.main",
            "run",
            "--app-id",
            "sleepy",
            "--",
            sys.executable,
            "-c",
            APP_SLEEPS,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    pids: list[int] = []
    deadline = time.monotonic() + 30
    for line in proc.stdout:
        if line.startswith("== APP == ready"):
            pids = [int(x) for x in line.split()[4:]]
            break
        assert time.monotonic() < deadline, "app never became ready"
    listed = json.loads(run_dapr(home, "list", "-o", "json").stdout)
    daprd_pid = next(r["daprdPid"] for r in listed if r["appId"] == "sleepy")
    pids.append(daprd_pid)
    assert all(_alive(pid) for pid in pids)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGINT, rest
    assert "Received signal SIGINT" in rest
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in pids if _alive(pid)] == []
    assert json.loads(run_dapr(home, "list", "-o", "json").stdout) == []


def test_a_taken_port_is_refused_before_anything_starts(dapr: Dapr) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = dapr(
            "run",
            "--app-id",
            "clash",
            "--dapr-http-port",
            str(port),
            "--",
            sys.executable,
            "-c",
            "print('never')",
        )
    assert result.returncode == 1, result.output
    assert result.stderr.startswith(
        f"error: invalid configuration for HTTPPort. Port {port} is not available: choose "
        "another --dapr-http-port"
    ), result.stderr
    assert "Starting Dapr" not in result.stdout and "never" not in result.stdout


def test_daprd_failure_is_reported(dapr: Dapr) -> None:
    result = dapr(
        "run", "--app-id", "bad", "--log-level", "verbose", "--", sys.executable, "-c", "1"
    )
    assert result.returncode == 1, result.output
    assert result.stderr.startswith("error: daprd exited with code 2; see its log lines above")
    assert "invalid choice: 'verbose'" in result.output


def test_mtls_config_without_credentials_fails_early(dapr: Dapr, tmp_path: Path) -> None:
    config = tmp_path / "mtls.yaml"
    config.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nspec:\n  mtls:\n    enabled: true\n"
    )
    result = dapr("run", "--app-id", "a", "--config", str(config), "--", "true")
    assert result.returncode == 1
    assert "mTLS is enabled" in result.stderr and "ca.crt" in result.stderr
    assert "Starting Dapr" not in result.stdout


def test_ports_never_the_app_port_nor_reserved(home: Path) -> None:
    from pysentry.cli.home import DaprHome
    from pysentry.cli.procs import RESERVED_PORTS
    from pysentry.cli.runflags import parse_run_args
    from pysentry.cli.runplan import InUse, plan

    taken = set(range(40000, 40010))
    for _ in range(20):
        p = plan(
            DaprHome(home / ".dapr"),
            parse_run_args(["-a", "x", "-p", "40000", "--", "true"]),
            in_use=InUse(frozenset(), frozenset(taken)),
        )
        ports = {p.http_port, p.grpc_port, p.metrics_port, p.internal_port}
        assert len(ports) == 4 and not ports & (RESERVED_PORTS | taken | {40000})
    same = parse_run_args(["-a", "x", "-p", "40100", "-H", "40100", "--", "true"])
    with pytest.raises(CliError, match=r"HTTPPort\. Port 40100 is not available"):
        plan(DaprHome(home / ".dapr"), same)  # the app's own port is not daprd's
