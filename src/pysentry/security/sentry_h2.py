"""The h2 side of one unary gRPC call, shared by the asyncio call (:mod:`.sentry_call`) and the
blocking one daprd makes for its first certificate (:mod:`.sentry_blocking`).

No asyncio here: :class:`Exchange` is fed the bytes read from the connection and says what to
write; the callers move the bytes. What it sends is what grpclib sends (the same pseudo-headers,
``grpc-timeout``, ``te``, ``content-type``, ``user-agent``, window sizes and SETTINGS), and what
:meth:`Exchange.outcome` raises is what grpclib raises (:mod:`.sentry_status`), but for a
response message over :data:`MAX_MESSAGE` bytes: that fails as grpc-go's client fails it
(``RESOURCE_EXHAUSTED``), and its data is not kept.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import sys

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

from pysentry.security.sentry_status import GRPC_CONTENT_TYPE, error_in, reply

WINDOW = 4 << 20  # grpclib's default connection and stream windows
USER_AGENT = (
    f"grpc-python-grpclib/{grpclib.__version__} ({os.uname().sysname}; "
    f"{sys.implementation.name}/{'.'.join(map(str, sys.version_info[:3]))})"
).lower()
LOST = "Connection lost"
MAX_MESSAGE = 4 << 20
"""grpc-go's default limit on a received message (Dapr's client to Sentry keeps it)."""
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
        self.too_large: GRPCError | None = None

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
                if self._take(event.data or b""):
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, self.stream_id
                    )
                else:  # too large: the call is over, the connection closed
                    self.end()
                    return self.conn.data_to_send(), True
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

    def _take(self, data: bytes) -> bool:
        """Keep ``data``; False (and :attr:`too_large` set) once the message the response
        announces, or the data received, is over :data:`MAX_MESSAGE`."""
        if self.too_large is not None:
            return False
        self.data += data
        if len(self.data) < 5:
            return True
        size = max(int.from_bytes(self.data[1:5], "big"), len(self.data) - 5)
        if size <= MAX_MESSAGE:
            return True
        self.data.clear()
        self.too_large = GRPCError(
            Status.RESOURCE_EXHAUSTED,
            f"grpc: received message larger than max ({size} vs. {MAX_MESSAGE})",
        )
        return False

    def outcome(self) -> bytes:
        """The response message once :attr:`ended`; else what grpclib raises."""
        if self.too_large is not None:
            raise self.too_large
        if self.ended:
            error_in(self)
            raise StreamTerminatedError(self.ended)
        return reply(self)
