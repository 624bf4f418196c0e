"""The HTTP/2 side of one unary gRPC call, shared by the asyncio call (:mod:`.sentry_call`)
and the blocking one daprd makes for its first certificate (:mod:`.sentry_blocking`).

No asyncio here, and no ``h2``: :class:`Exchange` is fed the bytes read from the connection and
says what to write; the callers move the bytes. It speaks the little of HTTP/2 one request needs
(its frames, with HPACK from ``hpack``, the library ``h2`` itself uses): importing ``h2`` (its
state machines, events, ``hyperframe``) was about a tenth of daprd's start-up before its first
certificate (issue 13). What it sends is what grpclib's client sends through ``h2`` (the same
preface, SETTINGS, window update, header block and DATA frames; tested byte for byte), and what
it reports is what ``h2`` reports to grpclib: the response headers, the data, the trailers, the
end of the stream, a reset (``Stream reset by remote party, error_code: N``), GOAWAY
(``Received GOAWAY frame, closing connection; error_code: N``) or a protocol error. SETTINGS and
PING are acknowledged as ``h2`` acknowledges them. :meth:`Exchange.outcome` raises what grpclib
raises (:mod:`.sentry_status`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import sys

import grpclib
from grpclib.exceptions import StreamTerminatedError
from hpack import Decoder, Encoder, HPACKError

from pysentry.security.sentry_status import GRPC_CONTENT_TYPE, error_in, reply

WINDOW = 4 << 20  # grpclib's default connection and stream windows
USER_AGENT = (
    f"grpc-python-grpclib/{grpclib.__version__} ({os.uname().sysname}; "
    f"{sys.implementation.name}/{'.'.join(map(str, sys.version_info[:3]))})"
).lower()
LOST = "Connection lost"
PROTOCOL_ERROR = "Protocol error"

# Frame types and flags (RFC 9113 §6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY = range(8)
WINDOW_UPDATE, CONTINUATION = 8, 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
MAX_FRAME_SIZE = 16384  # ours and the peer's until it says otherwise (h2's default)
MAX_HEADER_LIST_SIZE = 65536
HEADER_TABLE_SIZE = 4096
STREAM_ID = 1
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return (
        len(payload).to_bytes(3, "big")
        + bytes((kind, flags))
        + stream_id.to_bytes(4, "big")
        + payload
    )


def _settings(*pairs: tuple[int, int]) -> bytes:
    return b"".join(k.to_bytes(2, "big") + v.to_bytes(4, "big") for k, v in pairs)


#: What h2's ``initiate_connection()`` sends for grpclib's client configuration (its local
#: settings, all of them), then the connection window raised to ``WINDOW`` and the
#: SETTINGS_INITIAL_WINDOW_SIZE of ``WINDOW``, as grpclib asks for.
OPENING = (
    PREFACE
    + frame(
        SETTINGS,
        0,
        0,
        _settings(
            (0x1, HEADER_TABLE_SIZE),
            (0x2, 1),  # ENABLE_PUSH (h2's default)
            (0x4, 65535),  # INITIAL_WINDOW_SIZE
            (0x5, MAX_FRAME_SIZE),
            (0x8, 0),  # ENABLE_CONNECT_PROTOCOL
            (0x3, 100),  # MAX_CONCURRENT_STREAMS
            (0x6, MAX_HEADER_LIST_SIZE),
        ),
    )
    + frame(WINDOW_UPDATE, 0, 0, (WINDOW - 65535).to_bytes(4, "big"))
    + frame(SETTINGS, 0, 0, _settings((0x4, WINDOW)))
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


class _ProtocolError(Exception):
    pass


class Exchange:
    """One request on a new HTTP/2 connection: :meth:`start` and :meth:`send` return the bytes
    to write, :meth:`received` too, for the bytes read. :attr:`ended` is None until the stream
    is over, then ``""`` (ended normally) or why it terminated (``StreamTerminatedError``'s
    text)."""

    def __init__(self) -> None:
        self.stream_id = 0
        self.headers: dict[str, str] | None = None
        self.trailers: dict[str, str] | None = None
        self.data = bytearray()
        self.ended: str | None = None
        self._encoder = Encoder()
        self._decoder = Decoder(max_header_list_size=MAX_HEADER_LIST_SIZE)
        self._decoder.max_allowed_table_size = HEADER_TABLE_SIZE
        self._buffer = b""
        self._block: tuple[int, int, bytearray] | None = None  # stream, flags, fragments
        self._out: list[bytes] = []

    def start(self) -> bytes:
        return OPENING

    def send(self, headers: list[tuple[str, str]], message: bytes) -> bytes:
        self.stream_id = STREAM_ID
        block = self._encoder.encode(headers)
        out = [frame(HEADERS, END_HEADERS, STREAM_ID, block)]
        if len(block) > MAX_FRAME_SIZE:  # never for our few headers; split as h2 does
            first, rest = block[:MAX_FRAME_SIZE], block[MAX_FRAME_SIZE:]
            out = [frame(HEADERS, 0, STREAM_ID, first)]
            while rest:
                chunk, rest = rest[:MAX_FRAME_SIZE], rest[MAX_FRAME_SIZE:]
                out.append(frame(CONTINUATION, 0 if rest else END_HEADERS, STREAM_ID, chunk))
        body = b"\0" + len(message).to_bytes(4, "big") + message
        while True:
            chunk, body = body[:MAX_FRAME_SIZE], body[MAX_FRAME_SIZE:]
            out.append(frame(DATA, 0 if body else END_STREAM, STREAM_ID, chunk))
            if not body:
                break
        return b"".join(out)

    def end(self, reason: str = "") -> None:
        if self.ended is None:
            self.ended = reason

    def received(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to write, whether the connection must be closed: a protocol error)."""
        self._buffer += data
        try:
            while len(self._buffer) >= 9:
                head = self._buffer[:9]
                length = int.from_bytes(head[:3], "big")
                if length > MAX_FRAME_SIZE:
                    raise _ProtocolError("frame too large")
                if len(self._buffer) < 9 + length:
                    break
                payload = self._buffer[9 : 9 + length]
                self._buffer = self._buffer[9 + length :]
                stream_id = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
                self._frame(head[3], head[4], stream_id, payload)
        except (_ProtocolError, HPACKError, UnicodeDecodeError):
            self.end(PROTOCOL_ERROR)
            return b"", True
        out, self._out = b"".join(self._out), []
        return out, False

    def _frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self._block is not None and kind != CONTINUATION:
            raise _ProtocolError("expected CONTINUATION")
        if kind == DATA:
            self._data(flags, stream_id, _unpad(flags, payload))
        elif kind == HEADERS:
            body = _unpad(flags, payload)
            if flags & PRIORITY_FLAG:
                body = body[5:]
            self._block = (stream_id, flags, bytearray(body))
            if flags & END_HEADERS:
                self._header_block()
        elif kind == CONTINUATION:
            if self._block is None or self._block[0] != stream_id:
                raise _ProtocolError("unexpected CONTINUATION")
            self._block[2].extend(payload)
            if flags & END_HEADERS:
                self._header_block()
        elif kind == RST_STREAM:
            if len(payload) != 4:
                raise _ProtocolError("RST_STREAM of the wrong size")
            if stream_id == self.stream_id:
                code = int.from_bytes(payload, "big")
                self.end(f"Stream reset by remote party, error_code: {code}")
        elif kind == SETTINGS:
            self._settings(flags, stream_id, payload)
        elif kind == PING:
            if len(payload) != 8 or stream_id:
                raise _ProtocolError("invalid PING")
            if not flags & ACK:
                self._out.append(frame(PING, ACK, 0, payload))
        elif kind == GOAWAY:
            if len(payload) < 8:
                raise _ProtocolError("GOAWAY too short")
            code = int.from_bytes(payload[4:8], "big")
            self.end(f"Received GOAWAY frame, closing connection; error_code: {code}")
        elif kind == WINDOW_UPDATE:
            if len(payload) != 4:
                raise _ProtocolError("WINDOW_UPDATE of the wrong size")
        elif kind == PUSH_PROMISE:  # h2 reports it and grpclib ignores it; its headers are
            body = _unpad(flags, payload)[4:]  # decoded all the same (HPACK state)
            self._block = (0, flags & END_HEADERS, bytearray(body))
            if flags & END_HEADERS:
                self._header_block()
        # PRIORITY and unknown frame types are ignored.

    def _settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id or (flags & ACK and payload) or len(payload) % 6:
            raise _ProtocolError("invalid SETTINGS")
        if flags & ACK:
            return
        for i in range(0, len(payload), 6):
            key = int.from_bytes(payload[i : i + 2], "big")
            value = int.from_bytes(payload[i + 2 : i + 6], "big")
            if key == 0x1:
                self._encoder.header_table_size = value
            elif (
                (key == 0x2 and value > 1)
                or (key == 0x4 and value > 2**31 - 1)
                or (key == 0x5 and not MAX_FRAME_SIZE <= value <= 2**24 - 1)
            ):
                raise _ProtocolError("invalid setting")
        self._out.append(frame(SETTINGS, ACK, 0))

    def _header_block(self) -> None:
        assert self._block is not None
        stream_id, flags, block = self._block
        self._block = None
        fields = self._decoder.decode(bytes(block), raw=True)  # the table is per connection
        if stream_id != self.stream_id or not stream_id:
            return
        headers = {bytes(k).decode("ascii"): bytes(v).decode("ascii") for k, v in fields}
        if self.headers is None:
            if headers.get(":status", "").startswith("1"):
                return  # informational
            self.headers = headers
        else:
            if not flags & END_STREAM:
                raise _ProtocolError("trailers without END_STREAM")
            self.trailers = headers
        if flags & END_STREAM:
            self.end()

    def _data(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id != self.stream_id or not stream_id:
            return
        if self.headers is None:
            raise _ProtocolError("DATA before the response headers")
        self.data += payload
        if flags & END_STREAM:
            self.end()

    def outcome(self) -> bytes:
        """The response message once :attr:`ended`; else what grpclib raises."""
        if self.ended:
            error_in(self)
            raise StreamTerminatedError(self.ended)
        return reply(self)


def _unpad(flags: int, payload: bytes) -> bytes:
    if not flags & PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise _ProtocolError("invalid padding")
    return payload[1 : len(payload) - payload[0]]
