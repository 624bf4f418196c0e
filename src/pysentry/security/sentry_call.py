"""One unary gRPC call over TLS on h2, made as grpclib's client makes it, without grpclib.client.

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
import contextlib
import ipaddress
import os
import socket
import ssl
import sys
from typing import cast
from urllib.parse import unquote

import grpclib
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from h2.exceptions import ProtocolError as H2ProtocolError
from h2.settings import SettingCodes

from pysentry.clock import Clock
from pysentry.errors import PeerRejected
from pysentry.pki.svid import Authorizer
from pysentry.security.sentry_wire import WireError
from pysentry.security.tls import AnchorsLike, peer_spiffe_id

GRPC_CONTENT_TYPE = "application/grpc"
CLOSE_WAIT_S = 1.0
"""How long a finished call waits for the TLS close before it aborts the connection."""
WINDOW = 4 << 20  # grpclib's default connection and stream windows
USER_AGENT = (
    f"grpc-python-grpclib/{grpclib.__version__} ({os.uname().sysname}; "
    f"{sys.implementation.name}/{'.'.join(map(str, sys.version_info[:3]))})"
).lower()
_HTTP_TO_GRPC = {  # gRPC's HTTP-to-gRPC status mapping, as grpclib applies it
    "400": Status.INTERNAL,
    "401": Status.UNAUTHENTICATED,
    "403": Status.PERMISSION_DENIED,
    "404": Status.UNIMPLEMENTED,
    "429": Status.UNAVAILABLE,
    "502": Status.UNAVAILABLE,
    "503": Status.UNAVAILABLE,
    "504": Status.UNAVAILABLE,
}
_H2 = H2Configuration(
    client_side=True,
    header_encoding="ascii",
    validate_inbound_headers=False,
    validate_outbound_headers=False,
    normalize_inbound_headers=False,
    normalize_outbound_headers=False,
)


def authority(host: str, port: int) -> str:
    with contextlib.suppress(ipaddress.AddressValueError):
        host = f"[{ipaddress.IPv6Address(host)}]"
    return f"{host}:{port}"


def encode_timeout(seconds: float) -> str:
    """``grpc-timeout`` as grpclib writes it."""
    for limit, unit, scale in ((10, "S", 1), (0.01, "m", 10**3), (0.00001, "u", 10**6)):
        if seconds > limit:
            return f"{int(seconds * scale)}{unit}"
    return f"{int(seconds * 10**9)}n"


class _Call(asyncio.Protocol):
    def __init__(self) -> None:
        self.conn = H2Connection(config=_H2)
        loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.stream_id = 0
        self.headers: dict[str, str] | None = None
        self.trailers: dict[str, str] | None = None
        self.data = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn.initiate_connection()
        initial = self.conn.local_settings.initial_window_size
        self.conn.increment_flow_control_window(WINDOW - initial)
        self.conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: WINDOW})
        self._flush()

    def send(self, headers: list[tuple[str, str]], message: bytes) -> None:
        self.stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(self.stream_id, headers)
        frame = b"\0" + len(message).to_bytes(4, "big") + message
        self.conn.send_data(self.stream_id, frame, end_stream=True)
        self._flush()

    def _flush(self) -> None:
        if self.transport is not None and (out := self.conn.data_to_send()):
            self.transport.write(out)

    def _finish(self, reason: str | None = None) -> None:
        if not self.done.done():
            if reason is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(StreamTerminatedError(reason))

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except H2ProtocolError:
            self._finish("Protocol error")
            if self.transport is not None:
                self.transport.close()
            return
        for event in events:
            if getattr(event, "stream_id", self.stream_id) != self.stream_id:
                continue
            if isinstance(event, ResponseReceived):
                self.headers = dict(event.headers)  # type: ignore[arg-type]
            elif isinstance(event, DataReceived):
                self.data += event.data or b""
                self.conn.acknowledge_received_data(event.flow_controlled_length, self.stream_id)
            elif isinstance(event, TrailersReceived):
                self.trailers = dict(event.headers)  # type: ignore[arg-type]
            elif isinstance(event, StreamEnded):
                self._finish()
            elif isinstance(event, StreamReset):
                why = f"Stream reset by remote party, error_code: {event.error_code}"
                self._finish(why if event.remote_reset else "Protocol error")
            elif isinstance(event, ConnectionTerminated):
                goaway = event.error_code
                self._finish(f"Received GOAWAY frame, closing connection; error_code: {goaway}")
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish("Connection lost")
        if not self.lost.done():
            self.lost.set_result(None)


def _check_status(headers: dict[str, str]) -> None:
    status = headers.get(":status")
    if status is not None and status != "200":
        raise GRPCError(_HTTP_TO_GRPC.get(status, Status.UNKNOWN), f"Received :status = {status!r}")


def _check_grpc_status(fields: dict[str, str]) -> None:
    value = fields.get("grpc-status")
    if value is None:
        raise GRPCError(Status.UNKNOWN, "Missing grpc-status header")
    try:
        status = Status(int(value))
    except ValueError:
        raise GRPCError(Status.UNKNOWN, f"Invalid grpc-status: {value!r}") from None
    if status is not Status.OK:
        message = fields.get("grpc-message")
        text = unquote(message, encoding="utf-8", errors="replace") if message is not None else None
        raise GRPCError(status, text)


def _reply(call: _Call) -> bytes:
    headers = call.headers or {}
    _check_status(headers)
    content_type = headers.get("content-type")
    if content_type is None:
        raise GRPCError(Status.UNKNOWN, "Missing content-type header")
    base, _, sub = content_type.partition("+")
    if base != GRPC_CONTENT_TYPE or (sub or "proto") != "proto":
        raise GRPCError(Status.UNKNOWN, f"Invalid content-type: {content_type!r}")
    if "grpc-status" in headers:  # trailers-only
        _check_grpc_status(headers)
    data = bytes(call.data)
    if data:  # read before the trailers, as grpclib does
        if data[0]:
            raise NotImplementedError("Compression not implemented")
        size = int.from_bytes(data[1:5], "big")
        if len(data) < 5 + size:
            raise WireError(f"the response message is cut short ({len(data) - 5} of {size} bytes)")
    if "grpc-status" not in headers:
        _check_grpc_status(call.trailers or {})
    if not data:
        raise WireError("the response holds no message")
    return data[5 : 5 + size]


def _error_in(call: _Call) -> None:
    """grpclib: an error status already received wins over the stream's termination."""
    if call.headers is not None:
        _check_status(call.headers)
    fields = call.trailers if call.trailers is not None else call.headers
    if fields is not None and "grpc-status" in fields:
        _check_grpc_status(fields)


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
        headers = [
            (":method", "POST"),
            (":scheme", "https"),
            (":path", path),
            (":authority", authority(host, port)),
            ("grpc-timeout", encode_timeout(deadline - loop.time())),
            ("te", "trailers"),
            ("content-type", GRPC_CONTENT_TYPE),
            ("user-agent", USER_AGENT),
        ]
        call.send(headers, message)
        try:
            await call.done
        except StreamTerminatedError:
            _error_in(call)
            raise
        return _reply(call)
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
