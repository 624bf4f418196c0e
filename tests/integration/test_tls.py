"""SPIFFE mutual TLS on real loopback sockets: contexts, peer IDs, refusals, rotation."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID
from grpclib.exceptions import StreamTerminatedError
from grpclib.server import Stream

from pysentry.clock import system_clock
from pysentry.errors import PeerRejected
from pysentry.pki.keys import KeyAlgorithm, PrivateKey, generate_key
from pysentry.pki.svid import authorize_id, authorize_path
from pysentry.proto.dapr.proto.sentry.v1 import sentry_grpc, sentry_pb2
from pysentry.security.channel import SpiffeChannel, SpiffeServer
from pysentry.security.identity import X509Svid
from pysentry.security.rotation import ClientContexts, RotatingServerContext
from pysentry.security.tls import client_context, peer_chain, peer_spiffe_id, server_context
from pysentry.spiffe import SpiffeId
from pysentry.testing import TestCA

SERVER_ID = SpiffeId.parse("spiffe://public/ns/default/server")
CLIENT_ID = SpiffeId.parse("spiffe://public/ns/default/client")


def _svid(ca: TestCA, spiffe_id: SpiffeId) -> X509Svid:
    chain, key = ca.issue_svid(spiffe_id)
    return X509Svid.from_chain(chain, key)


@dataclass
class EchoServer:
    """Replies with the client's verified SPIFFE ID (or the rejection), then echoes lines."""

    anchors: tuple[x509.Certificate, ...]
    port: int = 0
    seen: list[str] = field(default_factory=list)
    server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        try:
            if ssl_object.getpeercert(binary_form=True) is None:
                text = "no-client-cert"
            else:
                text = str(peer_spiffe_id(ssl_object, self.anchors, None, system_clock()))
        except PeerRejected as err:
            text = f"rejected: {err}"
        self.seen.append(text)
        writer.write(text.encode() + b"\n")
        try:
            while line := await reader.readline():
                writer.write(line)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


Serve = Callable[[ssl.SSLContext, tuple[x509.Certificate, ...]], Awaitable["EchoServer"]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[asyncio.Server] = []

    async def start(ctx: ssl.SSLContext, anchors: tuple[x509.Certificate, ...]) -> EchoServer:
        echo = EchoServer(anchors)
        server = await asyncio.start_server(echo.handle, "127.0.0.1", 0, ssl=ctx)
        echo.server = server
        echo.port = server.sockets[0].getsockname()[1]
        servers.append(server)
        return echo

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def _connect(
    port: int, ctx: ssl.SSLContext
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=ctx), timeout=5
    )
    first = await asyncio.wait_for(reader.readline(), timeout=5)
    return reader, writer, first.decode().strip()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        await writer.wait_closed()


@pytest.mark.parametrize(
    "algorithm", [KeyAlgorithm.EC_P256, KeyAlgorithm.ED25519], ids=["p256", "ed25519"]
)
async def test_mutual_tls_both_sides_see_the_peer_id(serve: Serve, algorithm: KeyAlgorithm) -> None:
    ca = TestCA.create("public", algorithm=algorithm)
    anchors = (ca.root_cert,)
    echo = await serve(server_context(_svid(ca, SERVER_ID), anchors), anchors)
    reader, writer, seen_by_server = await _connect(
        echo.port, client_context(_svid(ca, CLIENT_ID), anchors)
    )
    ssl_object = writer.get_extra_info("ssl_object")
    assert seen_by_server == str(CLIENT_ID)
    assert peer_spiffe_id(ssl_object, anchors, authorize_id(SERVER_ID), system_clock()) == SERVER_ID
    assert ssl_object.selected_alpn_protocol() == "h2"
    assert ssl_object.version() in ("TLSv1.2", "TLSv1.3")
    assert len(peer_chain(ssl_object)) == 2  # leaf + issuer, as presented
    writer.write(b"ping\n")
    assert await reader.readline() == b"ping\n"
    await _close(writer)


async def test_server_also_gets_the_full_client_chain(serve: Serve) -> None:
    ca = TestCA.create("public").child_ca()  # leaf <- child <- issuer <- root
    anchors = (ca.root_cert,)
    echo = await serve(server_context(_svid(ca, SERVER_ID), anchors), anchors)
    _, writer, seen = await _connect(echo.port, client_context(_svid(ca, CLIENT_ID), anchors))
    assert seen == str(CLIENT_ID)
    await _close(writer)


async def test_client_authorizer_rejects_an_unexpected_server(serve: Serve) -> None:
    ca = TestCA.create("public")
    anchors = (ca.root_cert,)
    echo = await serve(server_context(_svid(ca, SERVER_ID), anchors), anchors)
    _, writer, _ = await _connect(echo.port, client_context(_svid(ca, CLIENT_ID), anchors))
    ssl_object = writer.get_extra_info("ssl_object")
    with pytest.raises(
        PeerRejected, match=r"unexpected SPIFFE ID: 'spiffe://public/ns/default/server'"
    ):
        peer_spiffe_id(ssl_object, anchors, authorize_path("/ns/default/other"), system_clock())
    await _close(writer)


async def _expect_refused(port: int, ctx: ssl.SSLContext) -> None:
    """The server aborts the handshake: the client sees an SSL error, a reset or EOF."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=ctx), timeout=5
        )
    except (ssl.SSLError, ConnectionError):
        return
    try:
        line = await asyncio.wait_for(reader.readline(), timeout=5)
    except (ssl.SSLError, ConnectionError):
        line = b""
    finally:
        await _close(writer)
    assert line == b"", f"server answered {line!r}"


async def test_client_cert_from_another_root_is_refused(serve: Serve) -> None:
    ca, other = TestCA.create("public"), TestCA.create("public")
    anchors = (ca.root_cert,)
    echo = await serve(server_context(_svid(ca, SERVER_ID), anchors), anchors)
    await _expect_refused(echo.port, client_context(_svid(other, CLIENT_ID), anchors))
    assert echo.seen == []


async def test_client_without_cert_is_refused_when_required(serve: Serve) -> None:
    ca = TestCA.create("public")
    anchors = (ca.root_cert,)
    echo = await serve(server_context(_svid(ca, SERVER_ID), anchors), anchors)
    await _expect_refused(echo.port, client_context(None, anchors))
    assert echo.seen == []


async def test_client_refuses_a_server_from_another_root(serve: Serve) -> None:
    ca, other = TestCA.create("public"), TestCA.create("public")
    echo = await serve(server_context(_svid(other, SERVER_ID), None, require_client_cert=False), ())
    with pytest.raises(ssl.SSLCertVerificationError):
        await _connect(echo.port, client_context(None, (ca.root_cert,)))


async def test_tls_only_server_asks_for_no_client_cert(serve: Serve) -> None:
    ca = TestCA.create("public")
    anchors = (ca.root_cert,)
    ctx = server_context(_svid(ca, SERVER_ID), None, require_client_cert=False)
    echo = await serve(ctx, anchors)
    _, writer, seen = await _connect(echo.port, client_context(_svid(ca, CLIENT_ID), anchors))
    assert seen == "no-client-cert"
    await _close(writer)


async def test_rotation_changes_the_served_certificate_for_new_handshakes(serve: Serve) -> None:
    ca = TestCA.create("public")
    anchors = (ca.root_cert,)
    first, second = _svid(ca, SERVER_ID), _svid(ca, SERVER_ID)
    rotating = RotatingServerContext(first, anchors)
    echo = await serve(rotating.listener, anchors)
    client = client_context(_svid(ca, CLIENT_ID), anchors)

    old_reader, old_writer, _ = await _connect(echo.port, client)
    assert peer_chain(old_writer.get_extra_info("ssl_object"))[0] == first.leaf

    rotating.update(svid=second)
    _, new_writer, seen = await _connect(echo.port, client)
    assert seen == str(CLIENT_ID)
    assert peer_chain(new_writer.get_extra_info("ssl_object"))[0] == second.leaf
    assert new_writer.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"

    old_writer.write(b"still here\n")  # the established connection keeps working
    assert await asyncio.wait_for(old_reader.readline(), 5) == b"still here\n"
    await _close(old_writer)
    await _close(new_writer)


async def test_rotating_anchors_switches_trusted_roots(serve: Serve) -> None:
    old_ca, new_ca = TestCA.create("public"), TestCA.create("public")
    both = (old_ca.root_cert, new_ca.root_cert)
    rotating = RotatingServerContext(_svid(new_ca, SERVER_ID), both)
    echo = await serve(rotating.listener, both)
    old_client = client_context(_svid(old_ca, CLIENT_ID), both)
    reader, writer, seen = await _connect(echo.port, old_client)
    assert seen == str(CLIENT_ID)

    rotating.set_anchors((new_ca.root_cert,))  # the old root is dropped
    await _expect_refused(echo.port, old_client)
    _, w2, seen2 = await _connect(echo.port, client_context(_svid(new_ca, CLIENT_ID), both))
    assert seen2 == str(CLIENT_ID)
    writer.write(b"x\n")
    assert await asyncio.wait_for(reader.readline(), 5) == b"x\n"
    await _close(writer)
    await _close(w2)


def test_client_contexts_are_rebuilt_only_on_change() -> None:
    from pysentry.security.anchors import StaticAnchors

    ca = TestCA.create("public")
    anchors = StaticAnchors((ca.root_cert,))
    current = [_svid(ca, CLIENT_ID)]
    contexts = ClientContexts(lambda: current[0], anchors)
    first = contexts.get()
    assert contexts.get() is first
    current[0] = _svid(ca, CLIENT_ID)
    assert contexts.get() is not first


def _svid_parts(ca: TestCA) -> tuple[tuple[x509.Certificate, ...], PrivateKey]:
    return ca.issue_svid(CLIENT_ID)


def _leaf_without_uri_san(ca: TestCA) -> tuple[tuple[x509.Certificate, ...], PrivateKey]:
    """A client certificate OpenSSL accepts but that is no SVID (DNS SAN only)."""
    key = generate_key()
    now = system_clock()
    leaf = (
        x509.CertificateBuilder()
        .serial_number(x509.random_serial_number())
        .subject_name(x509.Name([]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("client")]), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return (leaf, *ca.chain), key


class _CA(sentry_grpc.CABase):
    def __init__(self) -> None:
        self.server: SpiffeServer | None = None
        self.callers: list[SpiffeId | None] = []

    async def SignCertificate(
        self,
        stream: Stream[sentry_pb2.SignCertificateRequest, sentry_pb2.SignCertificateResponse],
    ) -> None:
        request = await stream.recv_message()
        assert request is not None and self.server is not None
        self.callers.append(self.server.peer_id(stream))
        await stream.send_message(sentry_pb2.SignCertificateResponse(workload_certificate=b"x"))


async def test_grpclib_channel_and_server_check_spiffe_ids_per_connection() -> None:
    ca, other = TestCA.create("public"), TestCA.create("public")
    anchors = (ca.root_cert,)
    handler = _CA()
    server = SpiffeServer([handler], anchors=anchors)
    handler.server = server
    await server.start("127.0.0.1", 0, ssl=server_context(_svid(ca, SERVER_ID), anchors))
    port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        good = SpiffeChannel(
            "127.0.0.1",
            port,
            context=client_context(_svid(ca, CLIENT_ID), anchors),
            anchors=anchors,
            authorizer=authorize_id(SERVER_ID),
        )
        reply = await sentry_grpc.CAStub(good).SignCertificate(
            sentry_pb2.SignCertificateRequest(id="client"), timeout=5
        )
        assert reply.workload_certificate == b"x"
        assert good.peer_id == SERVER_ID
        assert handler.callers == [CLIENT_ID]
        good.close()

        wrong = SpiffeChannel(
            "127.0.0.1",
            port,
            context=client_context(_svid(ca, CLIENT_ID), anchors),
            anchors=anchors,
            authorizer=authorize_path("/ns/default/dapr-sentry"),
        )
        with pytest.raises(PeerRejected, match="unexpected SPIFFE ID"):
            await sentry_grpc.CAStub(wrong).SignCertificate(
                sentry_pb2.SignCertificateRequest(id="secret-token-holder"), timeout=5
            )
        wrong.close()
        assert handler.callers == [CLIENT_ID]  # nothing was sent to the wrong server

        for chain, key in (_svid_parts(other), _leaf_without_uri_san(ca)):
            # From another root: refused by OpenSSL in the handshake. Without a URI SAN:
            # OpenSSL accepts the chain, SpiffeServer closes the connection before any stream.
            rejected = SpiffeChannel(
                "127.0.0.1",
                port,
                context=client_context(X509Svid(CLIENT_ID, chain, key), anchors),
                anchors=anchors,
                authorizer=None,
            )
            with pytest.raises((StreamTerminatedError, ConnectionError, ssl.SSLError)):
                await sentry_grpc.CAStub(rejected).SignCertificate(
                    sentry_pb2.SignCertificateRequest(id="x"), timeout=5
                )
            rejected.close()
        assert handler.callers == [CLIENT_ID]
    finally:
        server.close()
        await server.wait_closed()


async def test_tls_only_rotating_context_for_sentry(serve: Serve) -> None:
    ca = TestCA.create("public")
    anchors = (ca.root_cert,)
    rotating = RotatingServerContext(_svid(ca, SERVER_ID), None, require_client_cert=False)
    echo = await serve(rotating.listener, anchors)
    _, w1, seen = await _connect(echo.port, client_context(None, anchors))
    assert seen == "no-client-cert"
    new = _svid(ca, SERVER_ID)
    rotating.set_identity(new)
    _, w2, _ = await _connect(echo.port, client_context(None, anchors))
    assert peer_chain(w2.get_extra_info("ssl_object"))[0] == new.leaf
    assert rotating.generation == 1
    await _close(w1)
    await _close(w2)


def test_key_file_fallback_leaves_nothing_behind(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without memfd_create the key goes through a 0700 temp dir that is removed at once."""
    import tempfile

    monkeypatch.delattr(os, "memfd_create")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ca = TestCA.create("public")
    ctx = server_context(_svid(ca, SERVER_ID), (ca.root_cert,))
    assert isinstance(ctx, ssl.SSLContext)
    assert list(tmp_path.iterdir()) == []
