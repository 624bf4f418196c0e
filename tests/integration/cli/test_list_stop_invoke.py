"""``dapr list -o json|yaml`` (Dapr's keys), ``dapr invoke`` and ``dapr stop`` against a real
``dapr run`` of a small HTTP app; ``dapr version``; ``-k`` on list/status/init."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pysentry import __version__
from pysentry.cli.procs import free_port
from tests.integration.cli.conftest import Dapr
from tests.integration.cli.runner import HTTP_APP, alive, background, listed, row_of, wait_gone

DAPR_KEYS = [
    "appId", "httpPort", "grpcPort", "appPort", "metricsEnabled", "command", "age", "created",
    "daprdPid", "cliPid", "appPid", "maxRequestBodySize", "httpReadBufferSize",
    "runTemplatePath", "appLogPath", "daprdLogPath", "runTemplateName",
]  # fmt: skip


def test_list_invoke_stop(home: Path, tmp_path: Path, dapr: Dapr) -> None:
    port = free_port()
    with background(home, tmp_path / "run.log", "run", "--app-id", "svc", "--app-port", str(port),
                    "--", sys.executable, str(HTTP_APP), str(port)) as bg:  # fmt: skip
        bg.wait_for("You're up and running! Both Dapr and your app logs will appear here.")
        row = row_of(home, "svc")
        assert row is not None
        assert list(row) == [*DAPR_KEYS, "pysentry"]
        assert row["appPort"] == port and row["cliPid"] == bg.proc.pid and row["appPid"] > 0
        assert row["metricsEnabled"] is True and row["maxRequestBodySize"] == 4 << 20
        assert row["command"] == (f"{sys.executable} {HTTP_APP} {port}")[:17] + "..."
        assert row["age"].endswith("s") and len(row["created"]) == len("2006-01-02 15:04.05")
        assert set(row["pysentry"]) == {
            "namespace", "spiffeId", "certExpiry", "metricsPort", "internalAddress"
        }  # fmt: skip
        as_yaml = yaml.safe_load(dapr("list", "-o", "yaml").stdout)
        assert [r["appId"] for r in as_yaml] == ["svc"] and as_yaml[0]["cliPid"] == bg.proc.pid
        table = dapr("list").stdout
        assert "APP ID" in table and "GRPC PORT" in table and "svc" in table

        ok = dapr("invoke", "--app-id", "svc", "--method", "echo/hi", "--data", '{"a": 1}')
        assert ok.returncode == 0, ok.output
        body = json.loads(ok.stdout.splitlines()[0])
        assert body["method"] == "POST" and body["path"] == "/echo/hi"
        assert body["body"] == '{"a": 1}' and body["headers"]["content-type"] == "application/json"
        assert ok.stdout.endswith("✅  App invoked successfully\n")

        payload = tmp_path / "payload.json"
        payload.write_text('{"from": "file"}')
        get = dapr("invoke", "-a", "svc", "-m", "echo", "-v", "GET", "--data-file", str(payload))
        assert get.returncode == 0 and json.loads(get.stdout.splitlines()[0])["method"] == "GET"

        failed = dapr("invoke", "--app-id", "svc", "--method", "echo?status=500")
        assert failed.returncode == 1
        assert failed.stderr == "error: error invoking app svc: 500 Internal Server Error\n"
        both = dapr("invoke", "-a", "svc", "-m", "echo", "-d", "x", "-f", str(payload))
        assert both.returncode == 1
        assert "Only one of --data and --data-file allowed" in both.stderr

        gone = dapr("stop", "--app-id", "nope")
        assert gone.returncode == 1
        assert gone.stderr == "error: failed to stop app id nope: couldn't find app id nope\n"
        pids = [row["daprdPid"], row["appPid"]]
        stopped = dapr("stop", "--app-id", "svc")
        assert stopped.returncode == 0, stopped.output
        assert stopped.stdout == "✅  app stopped successfully: svc\n"
        assert bg.wait_exit(20) == 0  # dapr run got SIGTERM, the aiohttp app exits cleanly
        assert wait_gone(pids) == []
        assert "Exited Dapr successfully" in bg.text(), bg.text()[-3000:]
    assert listed(home) == []


def test_stop_of_a_sidecar_without_cli_stops_daprd(home: Path, dapr: Dapr) -> None:
    """A daprd started by hand has no cliPID: Dapr stops the daprd itself."""
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    daprd = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pysentry.sidecar.main",
            "--app-id",
            "bare",
            "--dapr-http-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        row = row_of(home, "bare")
        while row is None and time.monotonic() < deadline and daprd.poll() is None:
            time.sleep(0.1)
            row = row_of(home, "bare")
        assert row is not None and row["cliPid"] == 0 and row["daprdPid"] == daprd.pid
        assert dapr("stop", "bare").stdout == "✅  app stopped successfully: bare\n"
        assert daprd.wait(15) in (0, -15)
    finally:
        if daprd.poll() is None:
            daprd.kill()
            daprd.wait()
    assert not alive(daprd.pid)


def test_invoke_errors(dapr: Dapr) -> None:
    missing = dapr("invoke")
    assert missing.returncode == 2
    assert missing.stderr == 'error: required flag(s) "app-id", "method" not set\n'
    unknown = dapr("invoke", "--app-id", "ghost", "--method", "x")
    assert unknown.returncode == 1
    assert unknown.stderr == "error: error invoking app ghost: app ID ghost not found\n"


def test_version(dapr: Dapr) -> None:
    text = f"CLI version: {__version__} \nRuntime version: {__version__}\n"
    assert dapr("version").stdout == text
    assert dapr("--version").stdout == text
    assert dapr("-v").stdout == text
    as_json = dapr("version", "-o", "json")
    assert as_json.stdout == (
        f'{{"Cli version":"{__version__}","Runtime version":"{__version__}"}}\n'
    )
    bad = dapr("version", "-o", "yaml")
    assert bad.returncode == 1 and "An invalid output format was specified." in bad.stderr


@pytest.mark.parametrize("command", [["status"], ["list"], ["stop", "-a", "x"]])
def test_kubernetes_flag_is_taken(dapr: Dapr, command: list[str]) -> None:
    """status/list -k go to the cluster (tests/k8s/test_cli_read.py); stop -k is refused."""
    result = dapr(*command, "-k", env={"KUBECONFIG": ""})
    assert result.returncode == 1, result.output
    expected = (
        "no kubeconfig: KUBECONFIG is not set"
        if command[0] != "stop"
        else "Kubernetes mode (-k) is not supported by `dapr run` and `dapr stop`"
    )
    assert expected in result.stderr
    assert "No such option" not in result.output


def test_app_protocol_grpc_reaches_an_sdk_grpc_app(home: Path, tmp_path: Path, dapr: Dapr) -> None:
    """``--app-protocol grpc`` is passed to daprd, which calls the app's ``OnInvoke``."""
    port = free_port()
    app = HTTP_APP.parent / "grpc_app.py"
    with background(home, tmp_path / "run.log", "run", "-a", "grpcapp", "-P", "grpc", "-p",
                    str(port), "--", sys.executable, str(app), str(port)) as bg:  # fmt: skip
        bg.wait_for("You're up and running!")
        deadline = time.monotonic() + 20
        while True:
            ok = dapr("invoke", "--app-id", "grpcapp", "--method", "echo", "--data", '{"g": 1}')
            if ok.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # the SDK app may still be binding its port
        assert ok.returncode == 0, ok.output + bg.text()[-3000:]
        assert json.loads(ok.stdout.splitlines()[0])["data"] == '{"g": 1}'
        assert "⚠" not in bg.text()  # the protocol is implemented: no CLI warning
        failed = dapr("invoke", "--app-id", "grpcapp", "--method", "fail")
        assert failed.returncode == 1 and failed.stderr.startswith(
            "error: error invoking app grpcapp: 500 "
        )
