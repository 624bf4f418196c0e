"""The real Dapr CLI (v1.16.5, :mod:`tests.interop.daprcli`) drives pysentry's ``daprd``.

``HOME`` is a temp dir laid out as ``dapr init --slim`` leaves it (the CLI finds everything from
``~/.dapr`` when neither ``--runtime-path`` nor ``DAPR_RUNTIME_PATH`` is set):

- ``~/.dapr/bin/daprd``: a symlink to this venv's ``daprd`` script;
- ``~/.dapr/config.yaml``: the slim init's Configuration (``daprConfig``, empty spec);
- ``~/.dapr/components/``: empty.

Then the real ``dapr run`` starts two sidecars with their apps, ``dapr list`` (table and JSON)
finds them by process name and reads their metadata, ``dapr invoke`` calls one, a call crosses
from one sidecar to the other, and ``dapr stop`` stops both, app and sidecar.

With ``spec.mtls.enabled`` the real CLI passes ``--sentry-address localhost:50001``, a fixed
port: that scenario (:func:`tests.interop.realcli.mtls_scenario`, our ``sentry`` on 50001) runs
in a network namespace of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pysentry import __version__
from tests.e2e.conftest import ROOT, free_port
from tests.interop.daprbins import DaprBuildError
from tests.interop.daprcli import CLI_VERSION, DaprCli, build_dapr_cli
from tests.interop.realcli import (
    CL_APP,
    DAPRD,
    MTLS_DONE,
    STOP_S,
    UP_S,
    Run,
    cli,
    listed,
    slim_home,
    spawn,
    start_run,
    wait_gone,
)
from tests.prebuild import NETNS_SCRIPT


@pytest.fixture(scope="module")
def dapr_cli() -> DaprCli:
    try:
        return build_dapr_cli()
    except DaprBuildError as err:
        pytest.fail(str(err), pytrace=False)


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for run in started:
        run.kill_group()


def test_real_cli_runs_lists_invokes_and_stops_our_daprd(
    dapr_cli: DaprCli, tmp_path: Path, runs: list[Run]
) -> None:
    env = slim_home(tmp_path / "home")

    version = cli(dapr_cli, env, "--version")
    assert version.returncode == 0, version
    assert version.stdout == f"CLI version: {CLI_VERSION} \nRuntime version: {__version__}\n"

    suffix = uuid.uuid4().hex[:8]
    a_id, b_id = f"cli-a-{suffix}", f"cli-b-{suffix}"
    for app_id in (a_id, b_id):
        runs.append(start_run(dapr_cli, env, tmp_path, app_id))
    for run in runs:
        run.wait_text("You're up and running! Both Dapr and your app logs will appear here.", UP_S)
        assert f"Starting Dapr with id {run.app_id}. HTTP Port: " in run.text()
        assert "Could not update sidecar metadata" not in run.text()
    a, b = runs

    # dapr list: the table, then JSON with Dapr's keys and the PIDs of CLI, daprd and app.
    table = cli(dapr_cli, env, "list")
    assert table.returncode == 0, table
    header = table.stdout.splitlines()[0].split()
    assert header[:4] == ["APP", "ID", "HTTP", "PORT"], table.stdout
    rows = listed(dapr_cli, env, {a_id, b_id})
    assert set(rows) == {a_id, b_id}, rows
    as_yaml = cli(dapr_cli, env, "list", "-o", "yaml")
    assert as_yaml.returncode == 0, as_yaml
    same = ("appId", "httpPort", "grpcPort", "appPort", "daprdPid", "cliPid", "appPid", "command")
    from_yaml = [r for r in yaml.safe_load(as_yaml.stdout) if r["appId"] in rows]
    assert sorted(tuple(r[k] for k in same) for r in from_yaml) == sorted(
        tuple(r[k] for k in same) for r in rows.values()
    )
    for run in runs:
        row = rows[run.app_id]
        assert row["appPort"] == run.app_port
        assert row["cliPid"] == run.popen.pid
        assert row["command"] == f"{sys.executable} {CL_APP} {run.app_port}"[:17] + "..."
        assert Path(f"/proc/{row['daprdPid']}/comm").read_text().strip() == "daprd"
        app_cmdline = Path(f"/proc/{row['appPid']}/cmdline").read_bytes().split(b"\0")
        assert app_cmdline[-2:] == [str(run.app_port).encode(), b""]
        assert any(f" {run.app_id} " in f" {line} " for line in table.stdout.splitlines())
        health = f"http://127.0.0.1:{row['httpPort']}/v1.0/healthz"
        with urllib.request.urlopen(health, timeout=5) as r:
            assert r.status == 204

    # dapr invoke: through B's own sidecar to B's app; POST by default, the body as sent.
    body = '{"hello":"world"}'
    invoked = cli(dapr_cli, env, "invoke", "--app-id", b_id, "--method", "len", "--data", body)
    assert invoked.returncode == 0, invoked
    reply = json.loads(invoked.stdout.splitlines()[0])
    assert (reply["method"], reply["content_length"]) == ("POST", str(len(body)))
    assert invoked.stdout.endswith("✅  App invoked successfully\n"), invoked.stdout
    missing = cli(dapr_cli, env, "invoke", "--app-id", f"nope-{suffix}", "--method", "len")
    assert missing.returncode == 1, missing
    assert f"app ID nope-{suffix} not found" in missing.stderr

    # A's sidecar (started by the real CLI) reaches B's through name resolution.
    url = f"http://127.0.0.1:{rows[a_id]['httpPort']}/v1.0/invoke/{b_id}/method/len?x=1"
    req = urllib.request.Request(url, data=b"abc", method="PUT")
    with urllib.request.urlopen(req, timeout=10) as r:
        crossed = json.loads(r.read())
    assert (crossed["method"], crossed["received"]) == ("PUT", 3)

    # dapr stop: the CLI process goes, and with it daprd and the app.
    for run in (a, b):
        pids = [rows[run.app_id]["daprdPid"], rows[run.app_id]["appPid"], run.popen.pid]
        stopped = cli(dapr_cli, env, "stop", "--app-id", run.app_id)
        assert stopped.returncode == 0, stopped
        assert stopped.stdout == f"✅  app stopped successfully: {run.app_id}\n", stopped
        run.popen.wait(STOP_S)
        wait_gone(pids, STOP_S)
        assert "Exited Dapr successfully" in run.text()
    assert listed(dapr_cli, env, {a_id, b_id}) == {}


def test_real_cli_finds_sidecars_of_the_daprd_script_and_of_our_dapr_run(
    dapr_cli: DaprCli, tmp_path: Path, runs: list[Run]
) -> None:
    """Process name and metadata are the same whoever starts daprd: the ``daprd`` script itself
    (no CLI PID: the real ``dapr stop`` kills daprd) or pysentry's ``dapr run``."""
    env = slim_home(tmp_path / "home")
    suffix = uuid.uuid4().hex[:8]
    script_id, ours_id = f"script-{suffix}", f"ours-{suffix}"
    app_port, http_port = free_port(), free_port()
    app = spawn(
        [sys.executable, str(CL_APP), str(app_port)], env, tmp_path / "app.log", runs, "app"
    )
    daprd_cmd = [str(DAPRD), "--app-id", script_id, "--app-port", str(app_port)]
    daprd_cmd += ["--dapr-http-port", str(http_port), "--dapr-grpc-port", str(free_port())]
    daprd_cmd += ["--metrics-port", str(free_port())]
    script = spawn(daprd_cmd, env, tmp_path / "daprd.log", runs, script_id)
    ours = spawn(
        [str(DAPRD.parent / "dapr"), "run", "--app-id", ours_id, "--", sys.executable, "-c",
         "import time; time.sleep(120)"],
        env, tmp_path / "ours.log", runs, ours_id,
    )  # fmt: skip
    deadline = time.monotonic() + UP_S
    rows: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        rows = listed(dapr_cli, env, {script_id, ours_id})
        if len(rows) == 2 and rows[ours_id]["appPid"] and rows[script_id]["httpPort"]:
            break
        time.sleep(0.5)
    assert set(rows) == {script_id, ours_id}, (rows, script.text()[-2000:], ours.text()[-2000:])
    assert rows[script_id]["httpPort"] == http_port
    assert rows[script_id]["appPort"] == app_port
    assert (rows[script_id]["cliPid"], rows[script_id]["appPid"]) == (0, 0)
    assert rows[script_id]["daprdPid"] == script.popen.pid
    assert rows[ours_id]["cliPid"] == ours.popen.pid, rows[ours_id]

    invoked = cli(dapr_cli, env, "invoke", "--app-id", script_id, "--method", "len", "-v", "GET")
    assert invoked.returncode == 0, invoked
    assert json.loads(invoked.stdout.splitlines()[0])["method"] == "GET"

    for run, pids in (
        (script, [script.popen.pid]),
        (ours, [ours.popen.pid, rows[ours_id]["daprdPid"], rows[ours_id]["appPid"]]),
    ):
        stopped = cli(dapr_cli, env, "stop", "--app-id", run.app_id)
        assert stopped.stdout == f"✅  app stopped successfully: {run.app_id}\n", stopped
        run.popen.wait(STOP_S)
        wait_gone(pids, STOP_S)
    assert listed(dapr_cli, env, {script_id, ours_id}) == {}
    assert app.popen.poll() is None  # the script's app was never the CLI's to stop


def test_real_cli_with_mtls_through_our_sentry_on_its_fixed_address(
    dapr_cli: DaprCli, tmp_path: Path
) -> None:
    cmd = ["unshare", "--net", "sh", "-c", NETNS_SCRIPT, sys.executable, "-m"]
    cmd += ["tests.interop.realcli", str(tmp_path), str(dapr_cli.dapr)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert done.stdout.endswith(f"{MTLS_DONE}\n"), done.stdout
