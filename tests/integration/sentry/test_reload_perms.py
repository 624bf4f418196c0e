"""Sentry running as an unprivileged user keeps serving when its credentials directory becomes
unreadable, reports it (log, metric, /healthz), and recovers by itself when access comes back,
picking up a CA that was replaced meanwhile. (Before: ``Fatal error: [Errno 13] Permission
denied`` and exit 1.)"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pysentry.pki.pem import load_certificates
from pysentry.proto.dapr.proto.sentry.v1 import sentry_pb2
from pysentry.testing import TestCA
from tests.unprivileged import NOBODY

from .conftest import SentryProcess, _wait_healthy, make_request, openssl_verify
from .prefork import Prefork, spawn_sentry

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to nobody")


@pytest.fixture(scope="module")
def prefork() -> Iterator[Prefork]:
    server = Prefork()
    yield server
    server.close()


@pytest.fixture
def open_workdir() -> Iterator[Path]:
    """A directory the unprivileged user can reach (pytest's tmp_path is 0700 root)."""
    workdir = Path(tempfile.mkdtemp(prefix="pysentry-perms-"))
    workdir.chmod(0o755)
    yield workdir
    shutil.rmtree(workdir)


def write_ca_as_nobody(ca: TestCA, creds: Path) -> None:
    ca.write_credentials(creds)
    for path in (creds, *creds.iterdir()):
        os.chown(path, NOBODY, NOBODY)


async def test_unreadable_credentials_directory_keeps_serving(
    prefork: Prefork, open_workdir: Path
) -> None:
    creds = open_workdir / "certs"
    creds.mkdir(mode=0o700)
    old_ca = TestCA.create("cluster.local")
    write_ca_as_nobody(old_ca, creds)
    sentry = spawn_sentry(
        prefork,
        open_workdir,
        creds,
        "--trust-domain",
        "cluster.local",
        "--log-level",
        "debug",
        uid=NOBODY,
    )
    _wait_healthy(sentry)
    assert os.stat(f"/proc/{sentry.proc.pid}").st_uid == NOBODY
    old_anchors = old_ca.anchors_pem()

    creds.chmod(0)
    sentry.wait_for_log("Issuer credentials reload rejected, still serving the previous CA")
    assert "permission denied" in sentry.log_text()
    sentry.wait_for_log("Issuer credentials still unusable", count=2)  # quiet periodic retries
    assert "dapr_sentry_issuercert_reload_failed_total 1.0" in sentry.metrics()
    status, body = sentry.healthz()
    assert status == 200
    detail = body["detail"]
    assert isinstance(detail, dict) and "permission denied" in detail["issuer-credentials"]
    response = await sentry.sign(make_request("during"), anchors_pem=old_anchors)
    assert response.trust_chain_certificates[0] == old_anchors
    assert sentry.proc.poll() is None
    assert "Fatal error" not in sentry.log_text()

    new_ca = TestCA.create("cluster.local")  # replaced while Sentry cannot look
    write_ca_as_nobody(new_ca, creds)
    creds.chmod(0o700)
    sentry.wait_for_log("Issuer credentials usable again")
    new_anchors = new_ca.anchors_pem()
    response = await sign_when_served(sentry, new_anchors)
    chain = load_certificates(response.workload_certificate)
    assert chain[1] == new_ca.cert
    assert "OK" in openssl_verify(open_workdir, new_anchors, chain)
    assert sentry.healthz() == (200, {"status": "ok", "not_ready": [], "detail": {}})
    assert sentry.stop() == 0


async def sign_when_served(
    sentry: SentryProcess, anchors: bytes
) -> sentry_pb2.SignCertificateResponse:
    """Sign once Sentry serves with a certificate of the new CA: the log line comes from the main
    process, and each ``--workers`` process gets the new serving certificate a moment later."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return await sentry.sign(make_request("after"), anchors_pem=anchors)
        except ssl.SSLCertVerificationError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
