"""The README's "Following Dapr's self-hosted mTLS docs" section, run verbatim.

Every ``sh`` block of the section is taken from README.md as it is: the blocks before the first
``###`` (the app) and then those of one path (by hand, or with the ``dapr`` CLI) make one
script. It runs under bash with ``set -eu``, with ``HOME`` a fresh directory and from an empty
working directory, inside a private network namespace with only loopback (``unshare --net``):
there the README's fixed, Dapr-default ports (50001, 9090, 8080, 3500, 3501, 8000) are free
whatever else runs on this machine, so nothing in the commands needs changing. The whole run
is bounded in time, and every process it started is killed afterwards (its own session).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import BIN, ROOT

SECTION = "## Following Dapr's self-hosted mTLS docs"
PATHS = ("### By hand, as in Dapr's docs", "### With the `dapr` CLI")
TIMEOUT_S = 90


def section_blocks() -> dict[str, list[str]]:
    """``{"": [app blocks], "### By hand...": [...], ...}`` from the README section."""
    text = (ROOT / "README.md").read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end != -1 else len(text)]
    blocks: dict[str, list[str]] = {"": []}
    heading = ""
    for part in re.split(r"^(### .*)$", section, flags=re.M):
        if part.startswith("### "):
            heading = part.strip()
            blocks[heading] = []
            continue
        blocks[heading] += re.findall(r"^```sh\n(.*?)^```$", part, flags=re.M | re.S)
    return blocks


def test_the_section_has_the_app_and_both_paths() -> None:
    blocks = section_blocks()
    assert list(blocks) == ["", *PATHS]
    assert any("cat > app.py" in b for b in blocks[""])
    assert any("cat > config.yaml" in b for b in blocks[PATHS[0]])
    assert any("dapr init --enable-mtls" in b for b in blocks[PATHS[1]])


def _run(tmp_path: Path, heading: str) -> subprocess.CompletedProcess[str]:
    blocks = section_blocks()
    script = tmp_path / "walkthrough.sh"
    script.write_text("\n".join(blocks[""] + blocks[heading]))
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAPR_")}
    env.update(
        HOME=str(home),
        PATH=f"{BIN}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        PYTHONUNBUFFERED="1",
        NO_COLOR="1",
    )
    inner = f"ip link set lo up && exec bash -eu {script}"
    proc = subprocess.Popen(
        ["unshare", "--net", "sh", "-c", inner],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{heading}: not done in {TIMEOUT_S}s:\n{out[-6000:]}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything the script left running
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def _check_common(run: subprocess.CompletedProcess[str], heading: str) -> None:
    assert run.returncode == 0, f"{heading}: exit {run.returncode}:\n{run.stdout[-6000:]}"
    out = run.stdout
    assert "hello from myapp to caller\n" in out, out[-6000:]
    assert re.search(r"Root certificate expires in \d+ hours\. Expiry date: ", out), out[-6000:]
    assert "Security is initialized successfully" in out
    assert "level=fatal" not in out and "level=error" not in out, out[-6000:]


def test_by_hand_path_runs_as_written(tmp_path: Path) -> None:
    run = _run(tmp_path, PATHS[0])
    _check_common(run, PATHS[0])
    out = run.stdout
    # daprd next to Sentry: its default gRPC API and metrics ports are Sentry's; it moves them
    assert "gRPC API port 50001 is in use" in out
    assert "Metrics port 9090 is in use" in out
    assert "Dapr shut down gracefully" in out  # `kill $(jobs -p)` stopped the sidecars


def test_cli_path_runs_as_written(tmp_path: Path) -> None:
    run = _run(tmp_path, PATHS[1])
    _check_common(run, PATHS[1])
    out = run.stdout
    assert "is in use" not in out  # dapr run picks free ports away from Sentry's
    assert "(mTLS enabled)" in out  # dapr init --enable-mtls
    assert "spiffe://public/ns/default/myapp" in out  # dapr list
    assert "spiffe://public/ns/default/caller" in out
    assert "app stopped successfully: myapp" in out
    config = yaml.safe_load((tmp_path / "home" / ".dapr" / "config.yaml").read_text())
    assert config["spec"]["mtls"]["enabled"] is True
