"""Start the real ``sentry`` process on free loopback ports and talk to it over TLS gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from grpclib.client import Channel

from pysentry.pki.csr import build_csr
from pysentry.pki.keys import KeyAlgorithm, PrivateKey, generate_key
from pysentry.pki.pem import load_certificates
from pysentry.proto.dapr.proto.sentry.v1 import sentry_pb2
from pysentry.proto.dapr.proto.sentry.v1.sentry_grpc import CAStub

STARTUP_TIMEOUT_S = 20.0
QUIET_PERIOD_S = "0.2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def client_context(anchors_pem: bytes) -> ssl.SSLContext:
    """Verify Sentry's chain against the anchors, with no hostname (SVIDs have URI SANs only)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cadata=anchors_pem.decode())
    ctx.set_alpn_protocols(["h2"])
    return ctx


def make_request(
    app_id: str = "myapp",
    namespace: str = "default",
    *,
    key: PrivateKey | None = None,
    csr: bytes | None = None,
    **fields: object,
) -> sentry_pb2.SignCertificateRequest:
    if csr is None:
        csr = build_csr(key or generate_key(KeyAlgorithm.EC_P256))
    return sentry_pb2.SignCertificateRequest(
        id=app_id,
        namespace=namespace,
        certificate_signing_request=csr,
        **fields,  # type: ignore[arg-type]
    )


@dataclass
class SentryProcess:
    proc: subprocess.Popen[bytes]
    creds: Path
    log_path: Path
    port: int
    healthz_port: int
    metrics_port: int
    args: tuple[str, ...]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def anchors_pem(self) -> bytes:
        return (self.creds / "ca.crt").read_bytes()

    def channel(self, anchors_pem: bytes | None = None) -> Channel:
        """A new channel; the caller closes it (inside its event loop)."""
        return Channel(
            "127.0.0.1", self.port, ssl=client_context(anchors_pem or self.anchors_pem())
        )

    async def sign(
        self, request: sentry_pb2.SignCertificateRequest, anchors_pem: bytes | None = None
    ) -> sentry_pb2.SignCertificateResponse:
        chan = self.channel(anchors_pem)
        try:
            return await CAStub(chan).SignCertificate(request, timeout=10)
        finally:
            await close_channel(chan)

    def healthz(self) -> tuple[int, dict[str, object]]:
        url = f"http://127.0.0.1:{self.healthz_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/"
        with urllib.request.urlopen(url, timeout=2) as resp:
            return str(resp.read().decode())

    def wait_for_log(self, text: str, timeout: float = 10.0, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log_text().count(text) >= count:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"log line {text!r} not seen; log:\n{self.log_text()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


def sentry_command(creds: Path, *extra: str) -> tuple[list[str], dict[str, int]]:
    ports = {"port": free_port(), "healthz_port": free_port(), "metrics_port": free_port()}
    cmd = [
        sys.executable,
        "-m",
        "pysentry.sentry.main",
        "--issuer-credentials",
        str(creds),
        "--listen-address",
        "127.0.0.1",
        "--port",
        str(ports["port"]),
        "--healthz-port",
        str(ports["healthz_port"]),
        "--metrics-port",
        str(ports["metrics_port"]),
        *extra,
    ]
    return cmd, ports


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NAMESPACE"}
    env["PYSENTRY_RELOAD_QUIET_PERIOD"] = QUIET_PERIOD_S
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_sentry_to_exit(creds: Path, *extra: str, timeout: float = 20) -> tuple[int, str]:
    """Run sentry expecting it to exit on its own (a startup failure); return (code, output)."""
    cmd, _ = sentry_command(creds, *extra)
    done = subprocess.run(cmd, capture_output=True, timeout=timeout, env=_env(), cwd=creds.parent)
    return done.returncode, (done.stdout + done.stderr).decode(errors="replace")


async def close_channel(chan: Channel) -> None:
    """Close a grpclib channel and wait until its socket is closed (no ResourceWarning later)."""
    proto = chan._protocol
    if proto is None:
        chan.close()
        return
    lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    original = proto.connection_lost

    def connection_lost(exc: BaseException | None) -> None:
        original(exc)
        if not lost.done():
            lost.set_result(None)

    proto.connection_lost = connection_lost  # type: ignore[method-assign]
    chan.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(lost, timeout=5)


StartSentry = Callable[..., SentryProcess]


class Launcher:
    """Starts sentry processes under ``workdir`` and stops them all at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[SentryProcess] = []

    def __call__(self, *extra: str, creds: Path | None = None, wait: bool = True) -> SentryProcess:
        creds = creds or self.workdir / "certs"
        cmd, ports = sentry_command(creds, *extra)
        log_path = self.workdir / f"sentry-{len(self.started)}.log"
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=_env(), cwd=self.workdir
            )
        handle = SentryProcess(proc, creds, log_path, args=tuple(cmd), **ports)
        self.started.append(handle)
        if wait:
            _wait_healthy(handle)
        return handle

    def stop_all(self) -> None:
        for handle in self.started:
            handle.stop()


@pytest.fixture
def start_sentry(tmp_path: Path) -> Iterator[StartSentry]:
    """``start_sentry(*flags, creds=None)``: a running sentry whose /healthz answered 200."""
    launcher = Launcher(tmp_path)
    yield launcher
    launcher.stop_all()


@pytest.fixture(scope="module")
def module_launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    """A launcher whose processes live for a whole test module."""
    launcher = Launcher(tmp_path_factory.mktemp("sentry"))
    yield launcher
    launcher.stop_all()


def _wait_healthy(handle: SentryProcess) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if handle.proc.poll() is not None:
            raise AssertionError(
                f"sentry exited with {handle.proc.returncode}:\n{handle.log_text()}"
            )
        with contextlib.suppress(OSError, ValueError):
            status, _ = handle.healthz()
            if status == 200:
                return
        time.sleep(0.05)
    raise AssertionError(f"sentry not healthy after {STARTUP_TIMEOUT_S}s:\n{handle.log_text()}")


def leaf_and_chain(response: sentry_pb2.SignCertificateResponse) -> tuple[x509.Certificate, ...]:
    return load_certificates(response.workload_certificate)


@contextlib.asynccontextmanager
async def tls_peer(port: int, anchors_pem: bytes) -> AsyncIterator[ssl.SSLObject]:
    """A raw TLS connection to Sentry; yields the SSL object to inspect the served certificate."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_context(anchors_pem)
    )
    try:
        ssl_obj = writer.get_extra_info("ssl_object")
        assert ssl_obj is not None
        yield ssl_obj
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
        del reader


def openssl_verify(tmp: Path, anchors_pem: bytes, chain: Sequence[x509.Certificate]) -> str:
    """Run ``openssl verify`` on the leaf with the rest of the chain as untrusted; return stdout."""
    from cryptography.hazmat.primitives.serialization import Encoding

    (tmp / "anchors.pem").write_bytes(anchors_pem)
    (tmp / "leaf.pem").write_bytes(chain[0].public_bytes(Encoding.PEM))
    (tmp / "untrusted.pem").write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in chain[1:]))
    done = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(tmp / "anchors.pem"),
            "-untrusted",
            str(tmp / "untrusted.pem"),
            "-purpose",
            "sslclient",
            str(tmp / "leaf.pem"),
        ],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout
