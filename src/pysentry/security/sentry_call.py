"""One unary gRPC call over TLS on HTTP/2 (:mod:`.sentry_h2`), made as grpclib's client makes it.

daprd's first certificate is one ``SignCertificate`` call; importing grpclib's client (its
channel, streams, events, metadata, multidict) cost about a tenth of daprd's start-up before
that certificate (issue 13). The servers and the sidecar-to-sidecar channels still use grpclib,
imported after the identity. What this call sends is what grpclib sends (the same pseudo-headers,
``grpc-timeout``, ``te``, ``content-type``, ``user-agent``, window sizes and SETTINGS), and what it
raises is what grpclib raises:

* the server's SVID is checked right after the handshake, before the request is sent
  (``PeerRejected``; the connection is aborted), as ``channel.SpiffeChannel`` does;
* ``GRPCError``: HTTP ``:status`` other than 200 (``Received :status = '503'``, gRPC's HTTP
  mapping), a missing or foreign ``content-type``, ``grpc-status`` not OK (the message
  percent-decoded), missing or invalid;
* ``StreamTerminatedError``: ``Connection lost``, ``Stream reset by remote party, error_code: N``,
  ``Received GOAWAY frame, closing connection; error_code: N``, ``Protocol error``, unless the
  headers or trailers received before carry an error status (then that ``GRPCError``);
* a compressed message: ``NotImplementedError('Compression not implemented')``.

A response without a message (or with a truncated one) is a :class:`WireError` here (grpclib
failed an assertion). The caller bounds the call's time (``asyncio.timeout``).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import cast

from pysentry.clock import Clock
from pysentry.errors import PeerRejected
from pysentry.pki.svid import Authorizer
from pysentry.security.sentry_h2 import LOST, Exchange, request_headers
from pysentry.security.tls import AnchorsLike, peer_spiffe_id

CLOSE_WAIT_S = 1.0
"""How long a finished call waits for the TLS close before it aborts the connection."""


class _Call(asyncio.Protocol):
    def __init__(self) -> None:
        self.exchange = Exchange()
        loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._write(self.exchange.start())

    def send(self, headers: list[tuple[str, str]], message: bytes) -> None:
        self._write(self.exchange.send(headers, message))

    def _write(self, out: bytes) -> None:
        if self.transport is not None and out:
            self.transport.write(out)

    def _finish(self) -> None:
        if self.exchange.ended is not None and not self.done.done():
            self.done.set_result(None)

    def data_received(self, data: bytes) -> None:
        out, close = self.exchange.received(data)
        self._finish()
        if close:
            if self.transport is not None:
                self.transport.close()
            return
        self._write(out)

    def connection_lost(self, exc: Exception | None) -> None:
        self.exchange.end(LOST)
        self._finish()
        if not self.lost.done():
            self.lost.set_result(None)


async def unary_call(
    host: str,
    port: int,
    path: str,
    message: bytes,
    *,
    context: ssl.SSLContext,
    anchors: AnchorsLike,
    authorizer: Authorizer | None,
    clock: Clock,
    timeout: float,
) -> bytes:
    """The response message's bytes; the connection is closed afterwards."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    transport, call = await loop.create_connection(_Call, host, port, ssl=context)
    try:
        ssl_object = transport.get_extra_info("ssl_object")
        try:
            if ssl_object is None:
                raise PeerRejected("connection is not TLS: cannot verify the peer")
            peer_spiffe_id(ssl_object, anchors, authorizer, clock())
        except BaseException:
            transport.abort()
            raise
        headers = request_headers(host, port, path, deadline - loop.time())
        call.send(headers, message)
        await call.done
        return call.exchange.outcome()
    finally:
        if not call.done.done():
            call.done.cancel()  # what the closing connection reports is for no one
        elif not call.done.cancelled():
            call.done.exception()  # retrieved: raised above, or not needed
        await _close(call, transport)


async def _close(call: _Call, transport: asyncio.Transport) -> None:
    """Close with TLS close_notify and wait (at most ``CLOSE_WAIT_S``) until the socket is
    closed; else abort it. A TLS close is not done when ``transport.close()`` returns: a caller
    that ends its event loop right after would leave the socket open."""
    transport.close()
    if call.lost.done():
        return
    try:
        await asyncio.wait_for(asyncio.shield(call.lost), CLOSE_WAIT_S)
    except TimeoutError:
        transport.abort()
    except asyncio.CancelledError:
        transport.abort()
        raise
