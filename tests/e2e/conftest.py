"""Real processes for end-to-end tests: ``sentry``, ``daprd`` and small apps on loopback.

``cluster`` (function scope) starts what a test asks for and stops everything afterwards (SIGTERM,
then SIGKILL), attaching the logs of every process to a failing test's output.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization

from pysentry.testing import TestCA

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
APPS = ROOT / "tests" / "apps"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    async def wait_log(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.text())
            if m:
                return m
            if not self.alive():
                break
            await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name}: {pattern!r} not seen in log:\n{self.text()[-4000:]}")


@dataclass
class Daprd:
    proc: Proc
    app_id: str
    http_port: int
    internal_port: int
    metrics_port: int
    grpc_port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    async def metric(self, session: aiohttp.ClientSession, name: str) -> float:
        async with session.get(f"http://127.0.0.1:{self.metrics_port}/") as r:
            text = await r.text()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total


@dataclass
class Cluster:
    tmp: Path
    procs: list[Proc] = field(default_factory=list)
    nr_db: Path = field(init=False)

    def __post_init__(self) -> None:
        self.nr_db = self.tmp / "nr.db"

    def spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> Proc:
        log = self.tmp / f"{name}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("DAPR_")}
        full_env.update({"PYTHONUNBUFFERED": "1", "HOME": str(self.tmp)})
        full_env.update(env or {})
        with log.open("wb") as out:
            popen = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=self.tmp
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def write_sentry_config(self, ttl: str, skew: str | None = "1s") -> Path:
        """A Sentry config; ``skew=None`` leaves allowedClockSkew at Dapr's default (15m)."""
        path = self.tmp / f"sentry-{ttl}-{skew}.yaml"
        path.write_text(
            "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: daprsystem\n"
            f"spec:\n  mtls:\n    enabled: true\n    workloadCertTTL: {ttl}\n"
            + (f"    allowedClockSkew: {skew}\n" if skew is not None else "")
        )
        return path

    async def sentry(
        self,
        creds: Path,
        *,
        ttl: str = "1h",
        skew: str | None = "1s",
        port: int | None = None,
        name: str = "sentry",
    ) -> tuple[Proc, int]:
        port = port or free_port()
        health = free_port()
        proc = self.spawn(
            name,
            [
                str(BIN / "sentry"),
                "--issuer-credentials",
                str(creds),
                "--config",
                str(self.write_sentry_config(ttl, skew)),
                "--port",
                str(port),
                "--healthz-port",
                str(health),
                "--metrics-port",
                str(free_port()),
                "--listen-address",
                "127.0.0.1",
                "--log-level",
                "debug",
            ],
        )
        await wait_http(proc, f"http://127.0.0.1:{health}/healthz", (200,))
        return proc, port

    async def mtls_sentry(self) -> tuple[int, Path, TestCA]:
        """A Sentry on a CA of the test's own: (Sentry's port, the anchors file, the CA)."""
        ca = TestCA.create("localhost")
        creds = self.tmp / "creds"
        creds.mkdir(mode=0o700)
        ca.write_credentials(creds)
        anchors = self.tmp / "anchors.pem"
        anchors.write_bytes(ca.anchors_pem())
        _, port = await self.sentry(creds)
        return port, anchors, ca

    def daprd_config(self, extra: str = "") -> Path:
        path = self.tmp / f"daprd-{abs(hash(extra))}.yaml"
        path.write_text(
            "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: appconfig\n"
            "spec:\n  nameResolution:\n    component: sqlite\n    configuration:\n"
            f"      connectionString: {self.nr_db}\n      updateInterval: 4s\n      timeout: 2s\n"
            + extra
        )
        return path

    async def daprd(
        self,
        app_id: str,
        app_port: int | None = None,
        *,
        sentry_port: int | None = None,
        anchors_file: Path | None = None,
        anchors_pem: bytes | None = None,
        config_extra: str = "",
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        wait: bool = True,
    ) -> Daprd:
        http, internal, metrics, grpc = free_port(), free_port(), free_port(), free_port()
        cmd = [
            str(BIN / "daprd"),
            "--app-id",
            app_id,
            "--dapr-http-port",
            str(http),
            "--dapr-grpc-port",
            str(grpc),
            "--dapr-internal-grpc-port",
            str(internal),
            "--metrics-port",
            str(metrics),
            "--config",
            str(self.daprd_config(config_extra)),
            "--log-level",
            "debug",
        ]
        if app_port:
            cmd += ["--app-port", str(app_port)]
        if sentry_port:
            cmd += ["--enable-mtls", "--sentry-address", f"127.0.0.1:{sentry_port}"]
        if anchors_file:
            cmd += ["--trust-anchors-file", str(anchors_file)]
        cmd += args or []
        full_env = dict(env or {})
        if anchors_pem:
            full_env["DAPR_TRUST_ANCHORS"] = anchors_pem.decode()
        proc = self.spawn(f"daprd-{app_id}", cmd, full_env)
        d = Daprd(proc, app_id, http, internal, metrics, grpc)
        if wait:
            await wait_http(proc, f"{d.url}/v1.0/healthz/outbound", (204,))
        return d

    async def app(self, name: str) -> tuple[Proc, int]:
        port = free_port()
        proc = self.spawn(
            f"app-{name}",
            [sys.executable, str(APPS / "http_app.py"), str(port)],
            {"APP_NAME": name},
        )
        await wait_http(proc, f"http://127.0.0.1:{port}/health", (200,))
        return proc, port

    async def sdk_app(self, sidecar: Daprd) -> tuple[Proc, int]:
        port = free_port()
        proc = self.spawn(
            "app-sdk",
            [sys.executable, str(APPS / "sdk_app.py"), str(port)],
            {"DAPR_HTTP_PORT": str(sidecar.http_port), "DAPR_HEALTH_TIMEOUT": "10"},
        )
        await wait_http(proc, f"http://127.0.0.1:{port}/health", (200,))
        return proc, port

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def dump(self) -> str:
        return "\n".join(f"===== {p.name} =====\n{p.text()[-3000:]}" for p in self.procs)


def svid_client_context(cluster: Cluster, ca: TestCA, app_id: str) -> ssl.SSLContext:
    """A TLS client context presenting an SVID of ``ca`` for ``app_id`` (namespace default),
    ALPN ``h2``, no server verification: for calls straight to a sidecar's internal port."""
    chain, key = ca.issue_svid(f"spiffe://public/ns/default/{app_id}")
    pem = cluster.tmp / f"{app_id}.pem"
    pem.write_bytes(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(pem)
    ctx.set_alpn_protocols(["h2"])
    return ctx


async def wait_tcp(port: int, timeout: float = 20) -> None:
    """Until something accepts connections on 127.0.0.1:``port`` (a gRPC app has no /health)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def wait_http(proc: Proc, url: str, ok: tuple[int, ...], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if not proc.alive():
                raise AssertionError(
                    f"{proc.name} exited ({proc.popen.returncode}):\n{proc.text()}"
                )
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status in ok:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{proc.name}: {url} not ready in {timeout}s:\n{proc.text()[-4000:]}")


@pytest.fixture
async def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop_all()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(c.dump())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    rep = yield
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
    return rep
