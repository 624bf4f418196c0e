"""Whole flows through the ``dapr`` CLI with a real Sentry and two real sidecars.

The root is renewed with the same key (``renew-certificate --private-key``) while appA's sidecar
calls appB's over mutual TLS: no request fails, no process restarts, and the sidecars end up with
certificates from the new issuer.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from pysentry.cli.demo_apps import APP_B
from pysentry.cli.demo_procs import (
    Proc,
    dapr_argv,
    http_ok,
    sentry_argv,
    spawn,
    stop_all,
    wait_for,
)
from pysentry.cli.procs import free_port
from pysentry.cli.quickstart import peek_chain
from pysentry.cli.status import running_sidecars
from pysentry.pki.keys import public_key_bytes
from pysentry.pki.pem import load_certificates
from tests.e2e.conftest import APPS

HTTP_APP = APPS / "http_app.py"
SDK_CLIENT = APPS / "sdk_grpc_client.py"

# Sidecars renew at half of NotAfter - NotBefore, and NotBefore is backdated by the clock skew:
# a small skew keeps renewals every ~3 s, so new leaves come from the new issuer quickly.
WORKLOAD_TTL = "6s"
CLOCK_SKEW = "1s"


@dataclass
class Mesh:
    home: Path
    env: dict[str, str]
    sentry_address: str
    a_http_port: int
    procs: list[Proc] = field(default_factory=list)

    @property
    def certs(self) -> Path:
        return self.home / ".dapr" / "certs"

    @property
    def config(self) -> Path:
        return self.home / ".dapr" / "config.yaml"

    def dapr(self, *args: str) -> str:
        done = subprocess.run(
            dapr_argv(*args), env=self.env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def pids(self) -> dict[str, int]:
        rows = running_sidecars(self.config, self.home / ".dapr")
        found = {r.app_id: r.pid for r in rows}
        found.update({p.name: p.popen.pid for p in self.procs})
        return found


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAPR_", "APP_"))}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1", COLUMNS="200")
    m = Mesh(home, env, f"localhost:{free_port()}", 0)
    try:
        m.dapr("init")
        m.config.write_text(
            "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: daprConfig\n"
            f"spec:\n  mtls:\n    enabled: true\n    workloadCertTTL: {WORKLOAD_TTL}\n"
            f"    allowedClockSkew: {CLOCK_SKEW}\n"
        )
        root_key = ec.generate_private_key(ec.SECP256R1())
        (tmp_path / "root.key").write_bytes(
            root_key.private_bytes(Encoding.PEM, PrivateFormat.TraditionalOpenSSL, NoEncryption())
        )
        m.dapr("mtls", "renew-certificate", "--private-key", str(tmp_path / "root.key"))
        healthz = free_port()
        port = m.sentry_address.rpartition(":")[2]
        sentry = spawn(
            "sentry",
            sentry_argv(m.certs, m.config, port=int(port), healthz_port=healthz),
            env,
            tmp_path,
        )
        m.procs.append(sentry)
        wait_for("sentry", lambda: http_ok(f"http://127.0.0.1:{healthz}/healthz"), procs=[sentry])
        (tmp_path / "app_b.py").write_text(APP_B)
        app_b = spawn(
            "dapr-run-appB",
            dapr_argv(
                "run",
                "--app-id",
                "appB",
                "--app-port",
                str(free_port()),
                "--sentry-address",
                m.sentry_address,
                "--",
                sys.executable,
                str(tmp_path / "app_b.py"),
            ),
            env,
            tmp_path,
        )
        m.procs.append(app_b)
        app_a = spawn(
            "dapr-run-appA",
            dapr_argv(
                "run",
                "--app-id",
                "appA",
                "--sentry-address",
                m.sentry_address,
            ),
            env,
            tmp_path,
        )
        m.procs.append(app_a)
        wait_for(
            "both sidecars",
            lambda: (
                {"appA", "appB"}
                <= {r.app_id for r in running_sidecars(m.config, m.home / ".dapr") if r.spiffe_id}
                and app_b.has("appB listening")
            ),
            procs=[sentry, app_a, app_b],
        )
        # appA's port as dapr run picked it: a port chosen here could be taken by then
        rows = running_sidecars(m.config, m.home / ".dapr")
        m.a_http_port = next(r.http_port for r in rows if r.app_id == "appA")
        yield m
    finally:
        leftovers = stop_all(m.procs, str(tmp_path))
        assert leftovers == []


class Traffic(threading.Thread):
    """Calls appB through appA's sidecar in a loop, one new connection each time."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.ok = 0
        self.failures: list[str] = []
        self.stop = threading.Event()

    def call(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(
                "POST",
                "/v1.0/invoke/appB/method/hello",
                body=b"{}",
                headers={"Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200 or json.loads(body)["caller_app_id"] != "appA":
                self.failures.append(f"{resp.status} {body[:200]!r}")
            else:
                self.ok += 1
        except (OSError, ValueError, KeyError) as err:
            self.failures.append(repr(err))
        finally:
            conn.close()

    def run(self) -> None:
        while not self.stop.is_set():
            self.call()
            time.sleep(0.02)


def test_same_key_root_renewal_under_traffic(mesh: Mesh, tmp_path: Path) -> None:
    before = mesh.pids()
    old_root = load_certificates((mesh.certs / "ca.crt").read_bytes())[0]
    old_issuer = load_certificates((mesh.certs / "issuer.crt").read_bytes())[0]
    traffic = Traffic(mesh.a_http_port)
    traffic.start()
    time.sleep(2)
    out = mesh.dapr("mtls", "renew-certificate", "--private-key", str(tmp_path / "root.key"))
    assert "The root key is unchanged" in out
    new_root = load_certificates((mesh.certs / "ca.crt").read_bytes())[0]
    new_issuer = load_certificates((mesh.certs / "issuer.crt").read_bytes())[0]
    assert new_root.subject == old_root.subject and new_root.serial_number != old_root.serial_number
    assert new_issuer.public_key() != old_issuer.public_key()

    def renewed() -> bool:  # both sidecars renewed their leaves under the new issuer
        leaves = _leaf_issuer_keys(mesh)
        return bool(leaves) and all(k == _key(new_issuer) for k in leaves)

    wait_for("leaves from the new issuer", renewed, timeout_s=30, procs=mesh.procs)
    time.sleep(1)
    traffic.stop.set()
    traffic.join(timeout=15)
    assert traffic.failures == [], traffic.failures[:5]
    assert traffic.ok > 50
    print(f"requests ok={traffic.ok} failed={len(traffic.failures)} across the renewal")
    assert mesh.pids() == before  # nothing restarted
    check = mesh.dapr("mtls", "check", "--sentry-address", mesh.sentry_address)
    assert "All checks passed" in check


def _key(cert: x509.Certificate) -> bytes:
    return public_key_bytes(cert.public_key())


def _leaf_issuer_keys(m: Mesh) -> list[bytes]:
    """The issuer key behind each sidecar's current leaf, from a TLS handshake with it."""
    anchors = load_certificates((m.certs / "ca.crt").read_bytes())
    issuer = load_certificates((m.certs / "issuer.crt").read_bytes())[0]
    keys = []
    for r in running_sidecars(m.config, m.home / ".dapr"):
        chain = asyncio.run(peek_chain(r.address, m.sentry_address, anchors))
        leaf = chain[0]
        try:
            leaf.verify_directly_issued_by(issuer)
        except (InvalidSignature, ValueError, TypeError):  # signed by another issuer
            keys.append(b"old")
        else:
            keys.append(_key(issuer))
    return keys


def test_new_root_key_rotation_under_traffic(mesh: Mesh) -> None:
    """A new root key: both roots trusted, sidecars reload ca.crt, then the old root is dropped."""
    before = mesh.pids()
    traffic = Traffic(mesh.a_http_port)
    traffic.start()
    time.sleep(1)
    out = mesh.dapr("mtls", "renew-certificate")
    assert "The root key changed. ca.crt now holds 2 root(s)" in out
    new_issuer = load_certificates((mesh.certs / "issuer.crt").read_bytes())[0]

    def renewed() -> bool:
        leaves = _leaf_issuer_keys(mesh)
        return bool(leaves) and all(k == _key(new_issuer) for k in leaves)

    wait_for("leaves under the new root", renewed, timeout_s=30, procs=mesh.procs)
    time.sleep(1)
    dropped = mesh.dapr("mtls", "drop-old-roots")
    assert "ca.crt now holds 1 root(s)" in dropped
    time.sleep(3)  # sidecars reload the one-root bundle; traffic keeps flowing
    traffic.stop.set()
    traffic.join(timeout=15)
    assert traffic.failures == [], traffic.failures[:5]
    assert traffic.ok > 50
    print(f"requests ok={traffic.ok} failed={len(traffic.failures)} across the root change")
    assert mesh.pids() == before


def test_dapr_run_gives_the_sdk_grpc_client_its_sidecar(tmp_path: Path) -> None:
    """``dapr init --enable-mtls``, Sentry, two ``dapr run``: the official SDK's default
    ``DaprClient()`` (gRPC on the ``DAPR_GRPC_PORT`` our CLI gives it) invokes appB over mTLS,
    and ``dapr list``/``dapr stop`` see both sidecars."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAPR_", "APP_"))}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1", COLUMNS="200", DAPR_HEALTH_TIMEOUT="10")
    procs: list[Proc] = []

    def dapr(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            dapr_argv(*args), env=env, capture_output=True, text=True, timeout=timeout, check=False
        )

    try:
        assert dapr("init", "--enable-mtls").returncode == 0
        certs, config = home / ".dapr" / "certs", home / ".dapr" / "config.yaml"
        port, healthz = free_port(), free_port()
        sentry_address = f"localhost:{port}"
        sentry = spawn(
            "sentry", sentry_argv(certs, config, port=port, healthz_port=healthz), env, tmp_path
        )
        procs.append(sentry)
        wait_for("sentry", lambda: http_ok(f"http://127.0.0.1:{healthz}/healthz"), procs=[sentry])
        app_port = free_port()
        app_b = spawn(
            "dapr-run-appB",
            dapr_argv(
                "run",
                "--app-id",
                "appB",
                "--app-port",
                str(app_port),
                "--sentry-address",
                sentry_address,
                "--",
                sys.executable,
                str(HTTP_APP),
                str(app_port),
            ),
            env,
            tmp_path,
        )
        procs.append(app_b)

        def b_has_identity() -> bool:
            rows = running_sidecars(config, home / ".dapr")
            return any(r.app_id == "appB" and r.spiffe_id for r in rows)

        wait_for("appB over mTLS", b_has_identity, procs=[sentry, app_b])
        caller = dapr(
            *("run", "--app-id", "appA", "--sentry-address", sentry_address, "--"),
            *(sys.executable, str(SDK_CLIENT), "appB"),
            timeout=90,
        )
        assert caller.returncode == 0, caller.stdout + caller.stderr
        line = next(x for x in caller.stdout.splitlines() if x.startswith("== APP == {"))
        out = json.loads(line.removeprefix("== APP == "))
        assert out["invoke"]["data"]["path"] == "/echo/grpc"
        assert out["invoke"]["data"]["headers"]["dapr-caller-app-id"] == "appA"
        assert out["metadata"]["id"] == "appA"
        listed = json.loads(dapr("list", "-o", "json").stdout)
        b = next(r for r in listed if r["appId"] == "appB")
        assert b["pysentry"]["spiffeId"] == "spiffe://public/ns/default/appB"
        assert b["grpcPort"] not in (port, 50001) and b["appPort"] == app_port
        stopped = dapr("stop", "--app-id", "appB")
        assert stopped.stdout == "✅  app stopped successfully: appB\n", stopped.stderr
        app_b.popen.wait(20)
    finally:
        leftovers = stop_all(procs, str(tmp_path))
        assert leftovers == []
