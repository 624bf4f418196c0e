"""``make demo``: the quickstart runs end to end and leaves no process behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pysentry.cli.demo_procs import processes_mentioning
from pysentry.cli.offline_demo import run_offline_demo


def test_demo_runs_the_quickstart(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAPR_")}
    env.update(HOME=str(tmp_path), TMPDIR=str(tmp_path))  # the demo's temp dirs land here
    done = subprocess.run(
        [sys.executable, "-m", "pysentry.demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "$ dapr init" in out
    assert "[appA] caller identity (appA's SVID): spiffe://public/ns/default/appA" in out
    assert "[appA] callee identity (appB's SVID): spiffe://public/ns/default/appB" in out
    assert "appB's sidecar verified the caller as app 'appA' in namespace 'default'" in out
    assert "peer SPIFFE ID: spiffe://public/ns/default/appB (verified against ca.crt)" in out
    chain = out[out.index("certificate chain (root -> issuer -> leaf):") :]
    assert chain.index("[root]") < chain.index("[issuer]") < chain.index("[leaf]")
    assert "URI SAN:   spiffe://public/ns/default/appB" in chain
    assert "Root certificate expires in" in out and "+0000 UTC" in out
    assert "spiffe://public/ns/default/appA" in out[out.index("$ dapr status") :]
    assert "'dapr run' for appA returned 0" in out
    assert "No processes left behind." in out
    assert processes_mentioning(str(tmp_path)) == []
    assert not any(p.name.startswith("pysentry-quickstart-") for p in tmp_path.iterdir())


def test_offline_demo_signs_and_handshakes(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_offline_demo() == 0
    out = capsys.readouterr().out
    assert "Peer SPIFFE ID seen by the caller (appA): spiffe://cluster.local/ns/default/appB" in out
    assert "Peer SPIFFE ID seen by the callee (appB): spiffe://cluster.local/ns/default/appA" in out
    assert "[root]" in out and "[leaf]" in out
