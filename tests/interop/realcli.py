"""Drive the real Dapr CLI (:mod:`tests.interop.daprcli`) against pysentry's daprd.

Helpers for ``tests/interop/test_real_dapr_cli.py``, and its mTLS scenario: ``python -m
tests.interop.realcli TMP DAPR`` runs it, meant for a network namespace of its own (``unshare
--net``): with ``spec.mtls.enabled`` in its config the real ``dapr run`` passes
``--enable-mtls --sentry-address localhost:50001``, a fixed port, so pysentry's ``sentry`` must
listen there, which only a private namespace makes safe on a shared machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pysentry.testing import TestCA
from tests.e2e.conftest import free_port
from tests.interop.daprcli import DaprCli

SENTRY = Path(sys.executable).parent / "sentry"
CLI_SENTRY_PORT = 50001  # the real CLI's sentryDefaultAddress, localhost:50001
MTLS_DONE = "mTLS scenario passed"

DAPRD = Path(sys.executable).parent / "daprd"
CL_APP = Path(__file__).resolve().parent / "cl_app.py"
UP_S = 40.0  # `dapr run` until "You're up and running!"
CMD_S = 30.0  # any other CLI command
STOP_S = 15.0


@dataclass
class Run:
    """One ``dapr run`` in its own process group (cleanup kills the group: CLI, daprd, app)."""

    app_id: str
    app_port: int
    popen: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_text(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text():
                return
            if self.popen.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"dapr run {self.app_id}: {needle!r} not seen:\n{self.text()[-4000:]}")

    def kill_group(self) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            self.popen.wait(STOP_S)
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()


def slim_home(home: Path, *, mtls: bool = False) -> dict[str, str]:
    """What ``dapr init --slim`` leaves in ``~/.dapr``, with our daprd (and ``mtls.enabled``
    when asked); the env to run the CLI."""
    dapr_dir = home / ".dapr"
    (dapr_dir / "bin").mkdir(parents=True)
    (dapr_dir / "components").mkdir()
    (dapr_dir / "bin" / "daprd").symlink_to(DAPRD)
    (dapr_dir / "config.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: daprConfig\n"
        + ("spec:\n  mtls:\n    enabled: true\n" if mtls else "spec: {}\n")
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAPR_")}
    env.update({"HOME": str(home), "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"})
    return env


def cli(dapr: DaprCli, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(dapr.dapr), *args], env=env, capture_output=True, text=True, timeout=CMD_S
    )


def listed(dapr: DaprCli, env: dict[str, str], ids: set[str]) -> dict[str, dict[str, Any]]:
    """``dapr list -o json`` rows for ``ids`` (other tests' sidecars may be listed too)."""
    done = cli(dapr, env, "list", "-o", "json")
    assert done.returncode == 0, done
    return {row["appId"]: row for row in json.loads(done.stdout) if row["appId"] in ids}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def wait_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    assert not [p for p in pids if alive(p)], f"still running after {timeout}s: {pids}"


def start_run(dapr: DaprCli, env: dict[str, str], tmp: Path, app_id: str) -> Run:
    port = free_port()
    log = tmp / f"dapr-run-{app_id}.log"
    cmd = [str(dapr.dapr), "run", "--app-id", app_id, "--app-port", str(port)]
    cmd += ["--", sys.executable, str(CL_APP), str(port)]
    with log.open("wb") as out:
        popen = subprocess.Popen(
            cmd, env=env, cwd=tmp, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Run(app_id, port, popen, log)


def spawn(cmd: list[str], env: dict[str, str], log: Path, runs: list[Run], app_id: str) -> Run:
    with log.open("wb") as out:
        popen = subprocess.Popen(
            cmd, env=env, cwd=log.parent, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    runs.append(Run(app_id, 0, popen, log))
    return runs[-1]


def _sentry(tmp: Path) -> tuple[subprocess.Popen[bytes], bytes]:
    """pysentry's ``sentry`` on 127.0.0.1:50001 with a CA of its own: (process, anchors PEM)."""
    ca = TestCA.create("localhost")
    creds = tmp / "creds"
    creds.mkdir(mode=0o700)
    ca.write_credentials(creds)
    config = tmp / "sentry.yaml"
    config.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: daprsystem\n"
        "spec:\n  mtls:\n    enabled: true\n    workloadCertTTL: 1h\n"
    )
    health = free_port()
    cmd = [str(SENTRY), "--issuer-credentials", str(creds), "--config", str(config)]
    cmd += ["--port", str(CLI_SENTRY_PORT), "--healthz-port", str(health)]
    cmd += ["--metrics-port", str(free_port()), "--listen-address", "127.0.0.1"]
    with (tmp / "sentry.log").open("wb") as out:
        popen = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + UP_S
    while time.monotonic() < deadline and popen.poll() is None:
        url = f"http://127.0.0.1:{health}/healthz"
        with suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                return popen, ca.anchors_pem()
        time.sleep(0.1)
    popen.kill()
    log = (tmp / "sentry.log").read_text(errors="replace")[-3000:]
    raise AssertionError(f"sentry on :{CLI_SENTRY_PORT} not healthy in {UP_S}s:\n{log}")


def mtls_scenario(tmp: Path, dapr: DaprCli) -> None:
    """Two ``dapr run`` with ``mtls.enabled``: each daprd gets its SVID from our Sentry on the
    CLI's fixed address, a call crosses the mTLS hop, and ``dapr stop`` stops both."""
    sentry, anchors = _sentry(tmp)
    env = slim_home(tmp / "home", mtls=True)
    env["DAPR_TRUST_ANCHORS"] = anchors.decode()  # the CLI passes its env on to daprd
    runs = [start_run(dapr, env, tmp, app_id) for app_id in ("mtls-a", "mtls-b")]
    try:
        for run in runs:
            run.wait_text("You're up and running!", UP_S)
        rows = listed(dapr, env, {"mtls-a", "mtls-b"})
        for run in runs:
            row = rows[run.app_id]
            argv = Path(f"/proc/{row['daprdPid']}/cmdline").read_bytes().split(b"\0")
            assert b"--enable-mtls" in argv, argv
            assert argv[argv.index(b"--sentry-address") + 1] == b"localhost:50001", argv
            with urllib.request.urlopen(
                f"http://127.0.0.1:{row['httpPort']}/v1.0/metadata", timeout=5
            ) as r:
                meta = json.loads(r.read())
            assert meta["mtls"]["enabled"] is True, meta
            assert meta["mtls"]["spiffeId"] == f"spiffe://public/ns/default/{run.app_id}", meta
        url = f"http://127.0.0.1:{rows['mtls-a']['httpPort']}/v1.0/invoke/mtls-b/method/len"
        req = urllib.request.Request(url, data=b"abc", method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            crossed = json.loads(r.read())
        assert crossed["received"] == 3, crossed
        assert crossed["headers"]["dapr-caller-app-id"] == "mtls-a", crossed  # from the SVID
        for run in runs:
            pids = [rows[run.app_id]["daprdPid"], rows[run.app_id]["appPid"], run.popen.pid]
            stopped = cli(dapr, env, "stop", "--app-id", run.app_id)
            assert stopped.stdout == f"✅  app stopped successfully: {run.app_id}\n", stopped
            run.popen.wait(STOP_S)
            wait_gone(pids, STOP_S)
    except BaseException:
        for run in runs:
            print(f"===== dapr run {run.app_id} =====\n{run.text()[-3000:]}", file=sys.stderr)
        print(f"===== sentry =====\n{(tmp / 'sentry.log').read_text()[-3000:]}", file=sys.stderr)
        raise
    finally:
        for run in runs:
            run.kill_group()
        sentry.terminate()
        sentry.wait(STOP_S)
    print(MTLS_DONE)


if __name__ == "__main__":
    mtls_scenario(Path(sys.argv[1]), DaprCli(Path(sys.argv[2]), 0.0))
