"""``dapr run -f dapr.yaml``: Dapr's run template, two apps with their own sidecars, logs prefixed
per app and written under each app's ``.dapr/logs``, stopped together by ``dapr stop -f`` or by
SIGTERM; a bad template is refused before anything starts."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

from pysentry.cli.console import INFO
from pysentry.cli.procs import free_port
from tests.integration.cli.conftest import Dapr
from tests.integration.cli.runner import HTTP_APP, background, listed, wait_gone

# appB calls appA through its own sidecar, then idles.
CALLER = """
import json, os, time, urllib.request
print("greeting", os.environ["GREETING"], os.environ["SHARED"], flush=True)
url = f"http://127.0.0.1:{os.environ['DAPR_HTTP_PORT']}/v1.0/invoke/appa/method/echo/fromb"
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    try:
        body = json.load(urllib.request.urlopen(url, timeout=2))
        print("called", body["app"], body["path"], flush=True)
        break
    except OSError:
        time.sleep(0.1)
time.sleep(60)
"""


def _template(tmp_path: Path) -> tuple[Path, int, int]:
    a, b = tmp_path / "appa", tmp_path / "appb"
    a.mkdir()
    b.mkdir()
    (b / "caller.py").write_text(CALLER)
    port, b_http = free_port(), free_port()
    run_file = tmp_path / "dapr.yaml"
    run_file.write_text(
        "version: 1\n"
        "name: pair\n"
        "common:\n"
        "  logLevel: debug\n"
        "  env:\n"
        "    SHARED: from-common\n"
        "    GREETING: common\n"
        "apps:\n"
        "  - appDirPath: ./appa\n"
        f"    appPort: {port}\n"
        "    env:\n"
        "      APP_NAME: served-by-a\n"
        f"    command: [{json.dumps(sys.executable)}, {json.dumps(str(HTTP_APP))}, '{port}']\n"
        "  - appID: appb\n"
        "    appDirPath: ./appb\n"
        f"    daprHTTPPort: {b_http}\n"
        "    daprdLogDestination: console\n"
        "    appLogDestination: console\n"
        "    env:\n"
        "      GREETING: hello\n"
        f"    command: [{json.dumps(sys.executable)}, caller.py]\n"
    )
    return run_file, port, b_http


def test_run_file_apps_logs_and_stop_f(home: Path, tmp_path: Path, dapr: Dapr) -> None:
    run_file, port, b_http = _template(tmp_path)
    with background(home, tmp_path / "run.log", "run", "-f", str(run_file)) as bg:
        bg.wait_for("== APP - appb == called served-by-a /echo/fromb", timeout_s=40)
        out = bg.text()
        assert f"{INFO}Validating config and starting app 'appa'" in out
        assert "== APP - appb == greeting hello from-common" in out
        rows = {r["appId"]: r for r in listed(home)}
        assert set(rows) == {"appa", "appb"}
        a, b = rows["appa"], rows["appb"]
        assert a["appPort"] == port and a["cliPid"] == b["cliPid"] == bg.proc.pid
        assert b["httpPort"] == b_http and a["httpPort"] != b_http
        assert a["runTemplatePath"] == str(run_file) and a["runTemplateName"] == "pair"
        logs = tmp_path / "appa" / ".dapr" / "logs"
        assert a["appLogPath"].startswith(str(logs / "appa_app_"))
        assert a["daprdLogPath"].startswith(str(logs / "appa_daprd_"))
        app_a_lines = [x for x in out.splitlines() if x.startswith("== APP - appa == ")]
        assert app_a_lines, out  # fileAndConsole: on the console and in the file
        assert app_a_lines[0] in Path(a["appLogPath"]).read_text().splitlines()
        assert "level=debug" in Path(a["daprdLogPath"]).read_text()  # common.logLevel
        assert b["appLogPath"] == b["daprdLogPath"] == ""  # console only
        assert "app_id=appb" in out and "app_id=appa" not in out  # appa's daprd logs to file
        pids = [a["daprdPid"], a["appPid"], b["daprdPid"], b["appPid"]]
        stopped = dapr("stop", "-f", str(run_file))
        assert stopped.returncode == 0, stopped.output
        assert stopped.stdout == "✅  Dapr and app processes stopped successfully\n"
        assert bg.wait_exit(30) == 0, bg.text()[-3000:]
        assert wait_gone(pids) == []
        assert "Received signal to stop Dapr and app processes." in bg.text()
    assert listed(home) == []
    again = dapr("stop", "-f", str(tmp_path))  # a directory: its dapr.yaml
    assert again.returncode == 1
    assert f"couldn't find apps with run file {str(run_file)!r}" in again.stderr


def test_sigterm_stops_every_app(home: Path, tmp_path: Path) -> None:
    _template(tmp_path)
    with background(home, tmp_path / "run.log", "run", "--run-file", str(tmp_path)) as bg:
        bg.wait_for("== APP - appb == called", timeout_s=40)
        pids = [p for r in listed(home) for p in (r["daprdPid"], r["appPid"])]
        assert len(pids) == 4
        bg.proc.send_signal(signal.SIGTERM)
        assert bg.wait_exit(30) == 0
        assert wait_gone(pids) == []
        assert "Exited Dapr successfully (appa)" in bg.text()


def test_bad_templates_are_refused(dapr: Dapr, tmp_path: Path) -> None:
    no_version = tmp_path / "a.yaml"
    no_version.write_text("apps:\n  - appDirPath: .\n")
    result = dapr("run", "-f", str(no_version))
    assert result.returncode == 1
    assert "required field 'version' not found in the provided run template file" in result.stderr
    missing_dir = tmp_path / "b.yaml"
    missing_dir.write_text("version: 1\napps:\n  - appDirPath: ./nowhere\n")
    result = dapr("run", "-f", str(missing_dir))
    assert result.returncode == 1 and "nowhere' does not exist" in result.stderr
    not_yaml = tmp_path / "c.txt"
    not_yaml.write_text("version: 1\n")
    result = dapr("run", "-f", str(not_yaml))
    assert result.returncode == 1 and "is not a YAML file" in result.stderr
    flags = dapr("run", "-f", str(no_version), "--app-id", "x", "-p", "1")
    assert (
        "⚠  The following flags are ignored when using --run-file and should be configured in "
        "the run file instead: app-id, app-port"
    ) in flags.stdout


def test_template_precedence(tmp_path: Path) -> None:
    """An app's own key beats ``common``; ``<appDirPath>/.dapr/config.yaml`` beats common's
    config; unknown keys are collected for the warning."""
    from pysentry.cli.runfile import load_template

    for name in ("one", "two"):
        (tmp_path / name / ".dapr").mkdir(parents=True)
    local = tmp_path / "two" / ".dapr" / "config.yaml"
    local.write_text("kind: Configuration\n")
    shared = tmp_path / "shared.yaml"
    shared.write_text("kind: Configuration\n")
    run_file = tmp_path / "dapr.yaml"
    run_file.write_text(
        "version: 1\ncommon:\n  configFilePath: ./shared.yaml\n  logLevel: warn\n"
        "  appProtocol: grpc\n  bogus: 1\n"
        "apps:\n  - appDirPath: one\n    logLevel: debug\n    daprGRPCPort: 4567\n"
        "    resourcesPath: .\n    containerImage: x\n  - appDirPath: two\n    typo: 2\n"
    )
    t = load_template(run_file, tmp_path / "home-config.yaml")
    one, two = t.apps
    assert (one.app_id, two.app_id) == ("one", "two")
    assert one.args.str_("log-level") == "debug" and two.args.str_("log-level") == "warn"
    assert one.args.str_("app-protocol") == two.args.str_("app-protocol") == "grpc"
    assert one.args.int_("dapr-grpc-port") == 4567 and two.args.int_("dapr-grpc-port") == -1
    assert one.args.str_("config") == str(shared) and two.args.str_("config") == str(local)
    assert one.args.list_("resources-path") == [str((tmp_path / "one").resolve())]
    assert t.unknown_keys == ("common.bogus", "apps[1].typo")
