"""daprd's start-up with its lazy imports (issue 13, lever 5), as real processes on loopback.

With ``--enable-mtls`` and ``--sentry-address`` the first certificate is requested before the
servers and the Configuration are loaded; these pin that the result is the same sidecar: a real
Sentry's identity, the Configuration applied, flags and errors as before.
"""

from __future__ import annotations

import asyncio
import re
import socket
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from pysentry import __version__
from pysentry.testing import TestCA
from tests.e2e.conftest import BIN, Cluster, Proc, free_port


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop_all()


def daprd(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "daprd"), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


async def test_identity_first_then_servers_with_the_configuration(cluster: Cluster) -> None:
    sentry_port, anchors, _ = await cluster.mtls_sentry()
    d = await cluster.daprd("startup", sentry_port=sentry_port, anchors_file=anchors)
    text = d.proc.text()
    order = [
        "Fetching initial identity",
        "Security is initialized successfully",
        "Internal gRPC server is running",
        "HTTP server is running",
        "dapr initialized. Status: Running",
    ]
    at = [text.find(line) for line in order]
    assert -1 not in at and at == sorted(at), (at, text)
    async with aiohttp.ClientSession() as s, s.get(f"{d.url}/v1.0/metadata") as r:
        meta = await r.json()
    assert meta["mtls"]["enabled"] is True
    assert meta["mtls"]["spiffeId"] == "spiffe://public/ns/default/startup"
    # The Configuration parsed after the identity is the one in use: its name-resolution
    # database holds this sidecar with that identity.
    with sqlite3.connect(cluster.nr_db) as db:
        rows = db.execute(
            "SELECT h.app_id, p.spiffe_id FROM hosts h"
            " JOIN hosts_pysentry p USING (registration_id)"
        ).fetchall()
    assert rows == [("startup", "spiffe://public/ns/default/startup")], rows
    assert Path(f"/proc/{d.proc.popen.pid}/comm").read_text().strip() == "daprd"


def test_version_and_unknown_flag() -> None:
    done = daprd("--version")
    assert (done.returncode, done.stdout.strip()) == (0, __version__)
    done = daprd("--no-such-flag")
    assert done.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in done.stderr


def test_missing_config_is_reported_before_sentry_is_asked(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    done = daprd(
        *("--app-id", "startup", "--config", str(missing), "--enable-mtls"),
        *("--sentry-address", f"127.0.0.1:{free_port()}"),
        *("--dapr-http-port", str(free_port()), "--metrics-port", str(free_port())),
    )
    assert done.returncode == 1
    assert f"--config: configuration file not found: {str(missing)!r}" in done.stderr
    assert "Fetching initial identity" not in done.stdout + done.stderr


def test_broken_config_wins_over_an_unreachable_sentry(tmp_path: Path) -> None:
    """The Configuration is parsed after the identity request; when that request fails, a
    broken --config is still the error shown (it is the one to fix)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nspec:\n  mtls: [1, 2\n")
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(TestCA.create("localhost").anchors_pem())
    done = daprd(
        *("--app-id", "startup", "--config", str(bad), "--enable-mtls"),
        *("--sentry-address", f"127.0.0.1:{free_port()}", "--trust-anchors-file", str(anchors)),
        *("--dapr-http-port", str(free_port()), "--metrics-port", str(free_port())),
        *("--dapr-grpc-port", str(free_port()), "--dapr-internal-grpc-port", str(free_port())),
    )
    assert done.returncode == 1
    assert f"error: invalid configuration {bad}" in done.stderr, done.stderr
    assert "initial identity" not in done.stderr


async def test_the_first_identity_is_had_before_asyncio_is_imported(cluster: Cluster) -> None:
    """With --enable-mtls and --sentry-address the first certificate is requested on the main
    thread before asyncio and uvloop are imported (issue 13); the sidecar then serves as usual."""
    sentry_port, anchors, _ = await cluster.mtls_sentry()
    d = await cluster.daprd(
        "early",
        sentry_port=sentry_port,
        anchors_file=anchors,
        env={"PYTHONPROFILEIMPORTTIME": "1"},  # one stderr line per import, in order
    )
    text = d.proc.text()

    def imported(module: str) -> int:
        found = re.search(rf"^import time: .*\|\s+{re.escape(module)}$", text, re.MULTILINE)
        assert found is not None, (module, text[-3000:])
        return found.start()

    identity = text.index("Security is initialized successfully")
    assert imported("asyncio") > identity
    assert imported("uvloop") > identity
    assert imported("pysentry.security.sentry_blocking") < identity
    for later in ("encodings.idna",):  # 127.0.0.1 needs no codec
        found = re.search(rf"^import time: .*\|\s+{re.escape(later)}$", text, re.MULTILINE)
        assert found is None or found.start() > identity, later
    async with aiohttp.ClientSession() as s, s.get(f"{d.url}/v1.0/metadata") as r:
        meta = await r.json()
    assert meta["mtls"]["spiffeId"] == "spiffe://public/ns/default/early"


async def _exit_code(proc: Proc, timeout: float = 20) -> int:
    for _ in range(int(timeout * 20)):
        if not proc.alive():
            return proc.popen.returncode
        await asyncio.sleep(0.05)
    raise AssertionError(f"{proc.name} still running:\n{proc.text()}")


async def test_sentry_down_is_fatal_after_daprs_five_attempts(cluster: Cluster) -> None:
    anchors = cluster.tmp / "anchors.pem"
    anchors.write_bytes(TestCA.create("localhost").anchors_pem())
    port = free_port()  # nothing listens
    d = await cluster.daprd("down", sentry_port=port, anchors_file=anchors, wait=False)
    assert await _exit_code(d.proc) == 1
    text = d.proc.text()
    why = (
        f"failed to retrieve the initial identity: failed to connect to Sentry at "
        f"'127.0.0.1:{port}': connection refused; is sentry running?"
    )
    assert f"error: {why}" in text
    assert f'level=fatal msg="Fatal error from runtime: {why}"' in text
    assert [f"attempt {n}/5 failed" in text for n in range(1, 6)] == [True] * 5  # --log-level debug


async def test_sentry_of_another_ca_is_refused_before_the_request(cluster: Cluster) -> None:
    sentry_port, _, _ = await cluster.mtls_sentry()
    other = cluster.tmp / "other.pem"
    other.write_bytes(TestCA.create("localhost").anchors_pem())
    d = await cluster.daprd("other", sentry_port=sentry_port, anchors_file=other, wait=False)
    assert await _exit_code(d.proc) == 1
    text = d.proc.text()
    assert "Sentry's certificate does not verify against the trust anchors" in text
    assert "check that DAPR_TRUST_ANCHORS holds Sentry's CA" in text
    assert "attempt 2/5" not in text  # fatal at once, not retried


@pytest.mark.parametrize("token", [None, ""])
async def test_an_unreadable_token_file_is_fatal(cluster: Cluster, token: str | None) -> None:
    sentry_port, anchors, _ = await cluster.mtls_sentry()
    path = cluster.tmp / "token"
    if token is not None:
        path.write_text(token)
    d = await cluster.daprd(
        "token",
        sentry_port=sentry_port,
        anchors_file=anchors,
        env={"DAPR_SENTRY_TOKEN_FILE": str(path)},
        wait=False,
    )
    assert await _exit_code(d.proc) == 1
    why = (
        f"failed to read token at path {str(path)!r}: No such file or directory"
        if token is None
        else f"token file {str(path)!r} is empty"
    )
    assert f"error: failed to retrieve the initial identity: {why}" in d.proc.text()


async def test_a_taken_port_is_reported_before_sentry_is_asked(cluster: Cluster) -> None:
    """With the first certificate requested before asyncio, a port that cannot be bound still
    ends start-up with its own error, and no certificate is requested."""
    sentry_port, anchors, _ = await cluster.mtls_sentry()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        d = await cluster.daprd(
            "taken",
            sentry_port=sentry_port,
            anchors_file=anchors,
            args=["--dapr-http-port", str(port)],
            wait=False,
        )
        assert await _exit_code(d.proc) == 1
    text = d.proc.text()
    assert f"--dapr-http-port: port {port} is already in use" in text
    assert "Fetching initial identity" not in text
