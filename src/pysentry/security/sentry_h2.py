"""The h2 side of one unary gRPC call, shared by the asyncio call (:mod:`.sentry_call`) and the
blocking one daprd makes for its first certificate (:mod:`.sentry_blocking`).

No asyncio here: :class:`Exchange` is fed the bytes read from the connection and says what to
write; the callers move the bytes. What it sends is what grpclib sends (the same pseudo-headers,
``grpc-timeout``, ``te``, ``content-type``, ``user-agent``, window sizes and SETTINGS), and what
:func:`reply` and :func:`error_in` raise is what grpclib raises (see :mod:`.sentry_call`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import sys
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

from pysentry.security.sentry_wire import WireError

GRPC_CONTENT_TYPE = "application/grpc"
WINDOW = 4 << 20  # grpclib's default connection and stream windows
USER_AGENT = (
    f"grpc-python-grpclib/{grpclib.__version__} ({os.uname().sysname}; "
    f"{sys.implementation.name}/{'.'.join(map(str, sys.version_info[:3]))})"
).lower()
LOST = "Connection lost"
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


def request_headers(host: str, port: int, path: str, seconds_left: float) -> list[tuple[str, str]]:
    return [
        (":method", "POST"),
        (":scheme", "https"),
        (":path", path),
        (":authority", authority(host, port)),
        ("grpc-timeout", encode_timeout(seconds_left)),
        ("te", "trailers"),
        ("content-type", GRPC_CONTENT_TYPE),
        ("user-agent", USER_AGENT),
    ]


class Exchange:
    """One request on a new h2 connection: :meth:`start` and :meth:`send` return the bytes to
    write, :meth:`received` too, for the bytes read. :attr:`ended` is None until the stream is
    over, then ``""`` (ended normally) or why it terminated (``StreamTerminatedError``'s text)."""

    def __init__(self) -> None:
        self.conn = H2Connection(config=_H2)
        self.stream_id = 0
        self.headers: dict[str, str] | None = None
        self.trailers: dict[str, str] | None = None
        self.data = bytearray()
        self.ended: str | None = None

    def start(self) -> bytes:
        self.conn.initiate_connection()
        initial = self.conn.local_settings.initial_window_size
        self.conn.increment_flow_control_window(WINDOW - initial)
        self.conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: WINDOW})
        return self.conn.data_to_send()

    def send(self, headers: list[tuple[str, str]], message: bytes) -> bytes:
        self.stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(self.stream_id, headers)
        frame = b"\0" + len(message).to_bytes(4, "big") + message
        self.conn.send_data(self.stream_id, frame, end_stream=True)
        return self.conn.data_to_send()

    def end(self, reason: str = "") -> None:
        if self.ended is None:
            self.ended = reason

    def received(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to write, whether the connection must be closed: an h2 protocol error)."""
        try:
            events = self.conn.receive_data(data)
        except H2ProtocolError:
            self.end("Protocol error")
            return b"", True
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
                self.end()
            elif isinstance(event, StreamReset):
                why = f"Stream reset by remote party, error_code: {event.error_code}"
                self.end(why if event.remote_reset else "Protocol error")
            elif isinstance(event, ConnectionTerminated):
                goaway = event.error_code
                self.end(f"Received GOAWAY frame, closing connection; error_code: {goaway}")
        return self.conn.data_to_send(), False

    def outcome(self) -> bytes:
        """The response message once :attr:`ended`; else what grpclib raises."""
        if self.ended:
            error_in(self)
            raise StreamTerminatedError(self.ended)
        return reply(self)


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


def reply(call: Exchange) -> bytes:
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


def error_in(call: Exchange) -> None:
    """grpclib: an error status already received wins over the stream's termination."""
    if call.headers is not None:
        _check_status(call.headers)
    fields = call.trailers if call.trailers is not None else call.headers
    if fields is not None and "grpc-status" in fields:
        _check_grpc_status(fields)
