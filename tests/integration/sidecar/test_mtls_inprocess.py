"""Proof that the sidecar hop is mutual TLS (real TLS on loopback, in one process).

A plaintext client, a client whose certificate is not an SVID, and a client from another root
are all refused by the internal server; the callee's app sees the caller's *verified* SPIFFE ID
(a spoofed header is overwritten); and a sidecar answering for another app-id is refused by the
caller before any request is sent.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpclib.client import Channel
from grpclib.exceptions import StreamTerminatedError

from pysentry.proto.dapr.proto.internals.v1.service_invocation_grpc import ServiceInvocationStub
from pysentry.security.anchors import StaticAnchors
from pysentry.security.identity import X509Svid
from pysentry.sidecar import messages
from pysentry.sidecar.app_channel import HttpAppChannel
from pysentry.sidecar.internal_client import InternalClient
from pysentry.sidecar.internal_server import ServiceInvocation
from pysentry.sidecar.invocation import InvocationError, InvokeRequest, Target
from pysentry.sidecar.mtls import Identity, channel_factory, internal_server
from pysentry.testing import TestCA
from tests.apps.http_app import build
from tests.integration.sidecar.conftest import serve

B = Target("appB", "default")


def const(value: str) -> Callable[[], str]:
    return lambda: value


def svid(ca: TestCA, app: str, ns: str = "default", td: str = "public") -> X509Svid:
    chain, key = ca.issue_svid(f"spiffe://{td}/ns/{ns}/{app}", ttl=timedelta(hours=1))
    return X509Svid.from_chain(chain, key)


@dataclass
class Callee:
    address: str
    identity: Identity
    anchors: StaticAnchors


@pytest.fixture
def ca() -> TestCA:
    return TestCA.create()


@pytest.fixture
async def callee(ca: TestCA) -> AsyncIterator[Callee]:
    async for c in _callee(ca, "appB"):
        yield c


async def _callee(ca: TestCA, app_id: str, td: str = "public") -> AsyncIterator[Callee]:
    runner, app_port = await serve(build())
    channel = HttpAppChannel(app_port)
    anchors = StaticAnchors.from_pem(ca.anchors_pem())
    identity = Identity(svid(ca, app_id, td=td), anchors)
    server = internal_server(ServiceInvocation(channel, app_id=app_id), anchors)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    await server.start(sock=sock, ssl=identity.server.listener)
    try:
        yield Callee(f"127.0.0.1:{sock.getsockname()[1]}", identity, anchors)
    finally:
        server.close()
        await server.wait_closed()
        await channel.close()
        await runner.cleanup()


def mtls_client(ca: TestCA, app: str = "appA") -> InternalClient:
    anchors = StaticAnchors.from_pem(ca.anchors_pem())
    identity = Identity(svid(ca, app), anchors)
    return InternalClient(channel_factory=channel_factory(identity.clients, anchors))


REQ = InvokeRequest(
    "echo",
    "POST",
    headers=(("dapr-caller-app-id", "evil"), ("dapr-caller-namespace", "x")),
    body=b"hi",
)


async def test_callee_app_sees_verified_caller_id(ca: TestCA, callee: Callee) -> None:
    client = mtls_client(ca, "appA")
    try:
        resp = await client.invoke(lambda: callee.address, B, REQ)
    finally:
        client.close()
    assert resp.status == 200
    seen = json.loads(resp.body)["headers"]
    assert seen["dapr-caller-app-id"] == "appA" and seen["dapr-caller-namespace"] == "default"


async def test_plaintext_client_is_refused(callee: Callee) -> None:
    client = InternalClient()
    try:
        with pytest.raises(InvocationError, match="connection error"):
            await client.invoke(lambda: callee.address, B, REQ)
    finally:
        client.close()


def _raw_tls_channel(
    address: str, ca_pem: bytes, chain_pem: bytes, key_pem: bytes, tmp: Path
) -> Channel:
    (tmp / "c.pem").write_bytes(chain_pem + key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata=ca_pem.decode())
    ctx.load_cert_chain(tmp / "c.pem")
    ctx.set_alpn_protocols(["h2"])
    host, port = address.rsplit(":", 1)
    return Channel(host, int(port), ssl=ctx)


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


async def _call_raw(channel: Channel) -> None:
    stub = ServiceInvocationStub(channel)
    try:
        await stub.CallLocal(messages.request_to_proto(REQ), timeout=5)
    finally:
        channel.close()


async def test_non_svid_client_cert_is_refused(
    ca: TestCA, callee: Callee, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pysentry.security.channel")
    # Signed by the trusted issuer, clientAuth, but no SPIFFE URI SAN: not an SVID.
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not-an-svid")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .sign(ca.key, hashes.SHA256())  # type: ignore[arg-type]
    )
    channel = _raw_tls_channel(
        callee.address, ca.anchors_pem(), _pem(cert, *ca.chain), _key_pem(key), tmp_path
    )
    with pytest.raises(StreamTerminatedError):  # the server aborts the connection
        await _call_raw(channel)
    assert "certificate contains no URI SAN" in caplog.text
    # A CA certificate (the issuer itself) presented as a client certificate: refused too.
    channel = _raw_tls_channel(
        callee.address,
        ca.anchors_pem(),
        _pem(*ca.chain),
        _key_pem(ca.key),
        tmp_path,  # type: ignore[arg-type]
    )
    with pytest.raises(StreamTerminatedError):
        await _call_raw(channel)


async def test_client_from_another_root_is_refused(
    ca: TestCA, callee: Callee, tmp_path: Path
) -> None:
    other = TestCA.create()
    chain, key = other.issue_svid("spiffe://public/ns/default/appA")
    channel = _raw_tls_channel(
        callee.address,
        ca.anchors_pem(),
        _pem(*chain),
        _key_pem(key),
        tmp_path,  # type: ignore[arg-type]
    )
    with pytest.raises(StreamTerminatedError):  # the TLS handshake fails on the server
        await _call_raw(channel)
    # ... and through the sidecar client too
    client = mtls_client(other, "appA")
    try:
        with pytest.raises(InvocationError):
            await client.invoke(lambda: callee.address, B, REQ)
    finally:
        client.close()


async def test_sidecar_answering_for_another_app_is_refused(ca: TestCA) -> None:
    async for impostor in _callee(ca, "appX"):
        client = mtls_client(ca, "appA")
        try:
            with pytest.raises(
                InvocationError, match="unexpected SPIFFE ID: 'spiffe://public/ns/default/appX'"
            ):
                await client.invoke(const(impostor.address), B, REQ)
        finally:
            client.close()


async def test_rotation_applies_to_new_connections_only(ca: TestCA, callee: Callee) -> None:
    client = mtls_client(ca, "appA")
    try:
        assert (await client.invoke(lambda: callee.address, B, REQ)).status == 200
        callee.identity.rotate(svid(ca, "appB"))  # new server cert for new handshakes
        assert callee.identity.server.generation == 1
        assert (await client.invoke(lambda: callee.address, B, REQ)).status == 200  # same conn
        client.discard(callee.address, B)
        assert (await client.invoke(lambda: callee.address, B, REQ)).status == 200  # new conn
    finally:
        client.close()


async def test_peer_in_another_trust_domain_is_accepted_by_path(ca: TestCA) -> None:
    async for other_td in _callee(ca, "appB", td="cluster.local"):
        client = mtls_client(ca, "appA")
        try:
            resp = await client.invoke(const(other_td.address), B, REQ)
        finally:
            client.close()
        assert resp.status == 200
