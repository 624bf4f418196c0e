"""``dapr run`` takes Dapr 1.16's flags: the app command is only what follows ``--`` (or the first
positional), flags pysentry lacks are warned about once, ports are free and never Sentry's, the
app gets ``DAPR_GRPC_PORT``, and cliPID/appPID/appCommand land in daprd's metadata."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from pysentry.cli.console import CliError
from pysentry.cli.procs import RESERVED_PORTS
from pysentry.cli.runflags import FLAGS, parse_run_args
from tests.integration.cli.conftest import Dapr

# Prints its environment, then waits until the CLI stored its metadata in the sidecar, and
# prints that too: the app sees what `dapr list` will see.
APP_META = """
import json, os, sys, time, urllib.request
print("argv", json.dumps(sys.argv[1:]), flush=True)
print("env", json.dumps({k: v for k, v in os.environ.items() if k.startswith(("APP_", "DAPR_"))}),
      flush=True)
url = f"http://127.0.0.1:{os.environ['DAPR_HTTP_PORT']}/v1.0/metadata"
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    ext = json.load(urllib.request.urlopen(url, timeout=2)).get("extended", {})
    if "appCommand" in ext:
        print("meta", json.dumps({**ext, "mypid": os.getpid(), "ppid": os.getppid()}), flush=True)
        break
    time.sleep(0.05)
"""


def _json_line(stdout: str, tag: str) -> Any:
    line = next(x for x in stdout.splitlines() if x.startswith(f"== APP == {tag} "))
    return json.loads(line.split(" ", 4)[4])


def test_dapr_flags_are_flags_and_the_app_gets_dapr_env(dapr: Dapr, tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(APP_META)
    result = dapr(
        "run", "--app-id", "flags", "--app-protocol", "http", "-G", "0", "--resources-path",
        str(tmp_path), "--enable-api-logging", "--log-level", "debug", "--max-body-size", "8Mi",
        "--placement-host-address", "", sys.executable, str(script), "--port", "5", "-G", "x",
    )  # fmt: skip
    assert result.returncode == 0, result.output
    assert "cannot start app command" not in result.output
    assert _json_line(result.stdout, "argv") == ["--port", "5", "-G", "x"]
    env = _json_line(result.stdout, "env")
    ports = {int(env[k]) for k in ("DAPR_HTTP_PORT", "DAPR_GRPC_PORT", "DAPR_METRICS_PORT")}
    assert len(ports) == 3 and not ports & RESERVED_PORTS
    assert env["APP_ID"] == "flags" and env["APP_PROTOCOL"] == "http"
    assert env["APP_CHANNEL_ADDRESS"] == "127.0.0.1" and "APP_PORT" not in env
    grpc = env["DAPR_GRPC_PORT"]
    assert (
        f"Starting Dapr with id flags. HTTP Port: {env['DAPR_HTTP_PORT']}. gRPC Port: {grpc}"
        in (result.stdout)
    )
    warnings = [x for x in result.stdout.splitlines() if x.startswith("⚠  ")]
    assert warnings == [
        "⚠  These flags are not implemented by pysentry and are ignored: --resources-path "
        f"{tmp_path}, --enable-api-logging (pysentry's daprd provides service invocation and mTLS "
        "only)"
    ]
    assert f"Checking if Dapr sidecar is listening on GRPC port {grpc}" in result.stdout
    assert "Dapr sidecar is up and running." in result.stdout  # daprd serves the gRPC API
    assert "request body size parameter is: 8388608 bytes" in result.stdout  # passed to daprd
    assert "level=debug" in result.stdout
    meta = _json_line(result.stdout, "meta")
    assert meta["appPID"] == str(meta["mypid"])
    assert meta["cliPID"] == str(meta["ppid"])  # the app's parent: the dapr run process
    assert meta["appCommand"] == f"{sys.executable} {script} --port 5 -G x"
    assert f"Updating metadata for appPID: {meta['mypid']}" in result.stdout


def test_the_cli_pid_is_the_dapr_run_process(home: Path, tmp_path: Path) -> None:
    from tests.integration.cli.runner import background, row_of

    with background(home, tmp_path / "run.log", "run", "-a", "pidcheck", "--", sys.executable,
                    "-c", "import time; time.sleep(30)") as bg:  # fmt: skip
        bg.wait_for("You're up and running!")
        row = row_of(home, "pidcheck")
        assert row is not None
        assert row["cliPid"] == bg.proc.pid
        assert row["appPid"] > 0 and row["daprdPid"] not in (0, row["appPid"], bg.proc.pid)
        assert Path(f"/proc/{row['daprdPid']}/comm").read_text().strip() == "daprd"


def test_app_id_is_generated_as_dapr_does(dapr: Dapr) -> None:
    result = dapr("run", "--", sys.executable, "-c", "import os; print('id', os.environ['APP_ID'])")
    assert result.returncode == 0, result.output
    app_id = next(x for x in result.stdout.splitlines() if x.startswith("== APP == id ")).split()[4]
    assert re.fullmatch(r"[a-z]+-[a-z]+", app_id), app_id
    assert f"Starting Dapr with id {app_id}." in result.stdout


def test_sidecar_only_without_command(home: Path, tmp_path: Path) -> None:
    from tests.integration.cli.runner import background, row_of

    with background(home, tmp_path / "run.log", "run", "--app-id", "lonely") as bg:
        bg.wait_for("You're up and running! Dapr logs will appear here.")
        assert "WARNING: no application command found." in bg.text()
        row = row_of(home, "lonely")
        assert row is not None and row["appPid"] == 0 and row["command"] == ""
        assert row["cliPid"] == bg.proc.pid


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus", "--", "true"], "error: unknown flag: --bogus (put the app command after '--'"),
        (["-Z", "true"], "error: unknown shorthand flag: 'Z' in -Z"),
        (["--app-port", "abc", "true"], "error: invalid argument 'abc' for --app-port: not an"),
        (["--app-id"], "error: flag needs an argument: --app-id"),
    ],
)
def test_usage_errors_name_the_flag(dapr: Dapr, args: list[str], message: str) -> None:
    result = dapr("run", *args)
    assert result.returncode == 2, result.output
    assert result.stderr.startswith(message), result.stderr
    assert "Starting Dapr" not in result.stdout


def test_help_lists_every_dapr_flag(dapr: Dapr) -> None:
    result = dapr("run", "--help")
    assert result.returncode == 0
    for flag in FLAGS:
        if not flag.hidden:
            assert f"--{flag.name}" in result.stdout


def test_kubernetes_run_gives_the_kubernetes_message(dapr: Dapr) -> None:
    result = dapr("run", "-k", "--app-id", "x", "--", "true")
    assert result.returncode == 1
    assert "Kubernetes mode (-k) is not supported" in result.stderr


def test_log_as_json_status_lines(dapr: Dapr) -> None:
    result = dapr("--log-as-json", "run", "--app-id", "js", "--", sys.executable, "-c", "1")
    assert result.returncode == 0, result.output
    statuses = [json.loads(x) for x in result.stdout.splitlines() if x.startswith('{"time"')]
    assert {"info", "success"} <= {s["status"] for s in statuses}
    assert any(s["msg"].startswith("Starting Dapr with id js.") for s in statuses)


def test_parser_follows_pflag() -> None:
    args = parse_run_args(
        [
            "-a=x",
            "-p3000",
            "--app-protocol=grpc",
            "--enable-api-logging=false",
            "--resources-path",
            "a,b",
            "--resources-path=c",
            "--",
            "-x",
        ]
    )
    assert args.str_("app-id") == "x" and args.int_("app-port") == 3000
    assert args.str_("app-protocol") == "grpc" and args.bool_("enable-api-logging") is False
    assert args.list_("resources-path") == ["a", "b", "c"] and args.command == ["-x"]
    with pytest.raises(CliError, match="not a boolean"):
        parse_run_args(["--app-ssl=maybe"])


def test_runtime_path_is_the_installation_directory(home: Path, tmp_path: Path) -> None:
    from tests.integration.cli.conftest import run_dapr
    from tests.integration.cli.runner import background

    other = tmp_path / "other"
    assert run_dapr(home, "init", "--runtime-path", str(other)).returncode == 0
    assert (other / ".dapr" / "config.yaml").is_file()
    with background(home, tmp_path / "run.log", "run", "--runtime-path", str(other), "-a", "rp",
                    "--", sys.executable, "-c", "import time; time.sleep(30)") as bg:  # fmt: skip
        bg.wait_for("You're up and running!")
        there = run_dapr(home, "--runtime-path", str(other), "list", "-o", "json")
        rows = json.loads(there.stdout)
        assert [r["appId"] for r in rows] == ["rp"]
        daprd_argv = Path(f"/proc/{rows[0]['daprdPid']}/cmdline").read_text().split("\0")
        config = daprd_argv[daprd_argv.index("--config") + 1]
        assert config == str(other / ".dapr" / "config.yaml")
