"""Chains shaped like the docs' step recipe (root and issuer both ``CN=cluster.local``, issuer
without AKI) over real loopback TLS: accepted as Go accepts them, and nothing else is."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from grpclib.exceptions import StreamTerminatedError
from grpclib.server import Stream

from pysentry.errors import PeerRejected
from pysentry.pki.keys import PrivateKey, generate_key
from pysentry.pki.profiles import workload_certificate
from pysentry.pki.svid import UntrustedChain, authorize_id
from pysentry.proto.dapr.proto.sentry.v1 import sentry_grpc, sentry_pb2
from pysentry.security.channel import SpiffeChannel, SpiffeServer
from pysentry.security.identity import X509Svid
from pysentry.security.tls import client_context, server_context, verified_issuers
from pysentry.spiffe import SpiffeId
from tests.unit.pki.factory import make_cert

SERVER_ID = SpiffeId.parse("spiffe://public/ns/default/server")
CLIENT_ID = SpiffeId.parse("spiffe://public/ns/default/client")
NOW = datetime.now(UTC)
BEFORE, AFTER = NOW - timedelta(days=1), NOW + timedelta(days=30)


def step_ca() -> tuple[x509.Certificate, x509.Certificate, PrivateKey]:
    """(root, issuer, issuer key): same subject, issuer without AKI, as ``step`` makes them."""
    root_key, issuer_key = generate_key(), generate_key()
    root = make_cert("cluster.local", root_key, pathlen=1, not_before=BEFORE, not_after=AFTER)
    issuer = make_cert(
        "cluster.local",
        issuer_key,
        (root, root_key),
        pathlen=0,
        not_before=BEFORE,
        not_after=AFTER,
    )
    return root, issuer, issuer_key


def svid(issuer: x509.Certificate, issuer_key: PrivateKey, spiffe_id: SpiffeId) -> X509Svid:
    key = generate_key()
    leaf = workload_certificate(
        key.public_key(), spiffe_id, issuer_cert=issuer, issuer_key=issuer_key, now=NOW
    ).cert
    return X509Svid.from_chain((leaf, issuer), key)


class _CA(sentry_grpc.CABase):
    def __init__(self) -> None:
        self.server: SpiffeServer | None = None
        self.callers: list[SpiffeId | None] = []

    async def SignCertificate(
        self, stream: Stream[sentry_pb2.SignCertificateRequest, sentry_pb2.SignCertificateResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None and self.server is not None
        self.callers.append(self.server.peer_id(stream))
        await stream.send_message(sentry_pb2.SignCertificateResponse(workload_certificate=b"x"))


async def _call(port: int, ctx: ssl.SSLContext, anchors: tuple[x509.Certificate, ...]) -> bytes:
    channel = SpiffeChannel(
        "127.0.0.1", port, context=ctx, anchors=anchors, authorizer=authorize_id(SERVER_ID)
    )
    try:
        reply = await sentry_grpc.CAStub(channel).SignCertificate(
            sentry_pb2.SignCertificateRequest(id="x"), timeout=5
        )
        return bytes(reply.workload_certificate)
    finally:
        channel.close()


def test_only_issuers_that_chain_to_the_anchors_become_partial_anchors() -> None:
    root, issuer, issuer_key = step_ca()
    assert verified_issuers([svid(issuer, issuer_key, SERVER_ID).chain], (root,), NOW) == (issuer,)
    other_root, other_issuer, _ = step_ca()
    assert verified_issuers([(other_issuer, other_issuer)], (root,), NOW) == ()
    assert verified_issuers([(issuer, issuer)], (other_root,), NOW) == ()
    assert verified_issuers([(issuer, issuer)], (root,), NOW + timedelta(days=60)) == ()


async def test_step_chains_verify_as_in_go_and_others_are_refused() -> None:
    root, issuer, issuer_key = step_ca()
    anchors = (root,)
    handler = _CA()
    server = SpiffeServer([handler], anchors=anchors)
    handler.server = server
    served = svid(issuer, issuer_key, SERVER_ID)
    await server.start("127.0.0.1", 0, ssl=server_context(served, anchors))
    port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        client = svid(issuer, issuer_key, CLIENT_ID)
        ok = client_context(client, anchors, verify_after_handshake=True)
        assert await _call(port, ok, anchors) == b"x"
        assert handler.callers == [CLIENT_ID]

        # OpenSSL's own verification (the old client) fails on this chain.
        strict = client_context(client, anchors)
        with pytest.raises(ssl.SSLCertVerificationError, match="self-signed certificate"):
            await _call(port, strict, anchors)

        # Same subjects, another root: the client is refused by the server...
        _, evil_issuer, evil_key = step_ca()
        evil = client_context(
            svid(evil_issuer, evil_key, CLIENT_ID), anchors, verify_after_handshake=True
        )
        with pytest.raises((StreamTerminatedError, ConnectionError, ssl.SSLError)):
            await _call(port, evil, anchors)
        assert handler.callers == [CLIENT_ID]
    finally:
        server.close()
        await server.wait_closed()

    # ...and a server from another root is refused by the client before any request.
    evil_server = SpiffeServer([handler], anchors=anchors)
    handler.server = evil_server
    _, evil_issuer, evil_key = step_ca()
    evil_svid = svid(evil_issuer, evil_key, SERVER_ID)
    await evil_server.start("127.0.0.1", 0, ssl=server_context(evil_svid, (evil_issuer,)))
    port = evil_server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        ctx = client_context(client, anchors, verify_after_handshake=True)
        with pytest.raises(UntrustedChain, match="could not verify leaf certificate"):
            await _call(port, ctx, anchors)
        assert isinstance(UntrustedChain("x"), PeerRejected)
        assert handler.callers == [CLIENT_ID]
    finally:
        evil_server.close()
        await evil_server.wait_closed()
