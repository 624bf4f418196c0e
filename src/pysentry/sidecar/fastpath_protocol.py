"""The pysentry-to-pysentry invocation protocol, ``pysentry-invoke/2``: frames, no I/O.

Two pysentry sidecars that both offer the ALPN id :data:`ALPN` on the internal mTLS port speak
this instead of gRPC (a Go daprd offers only ``h2`` and gets gRPC). One TLS connection carries
many concurrent calls; each frame is::

    length: uint32 (payload bytes) | kind: uint8 | stream: uint32 | payload

all big-endian. Kinds:

* ``REQUEST``  (caller -> callee): ``timeout_ms: uint32`` (0: none), then the request: the
  fields of the ``InternalInvokeRequest`` that ``CallLocal`` carries, as
  :mod:`.fastpath_codec` writes them (``/1`` carried the protobuf message itself);
* ``RESPONSE`` (callee -> caller): the response's ``InternalInvokeResponse`` fields, likewise;
* ``ERROR``    (callee -> caller): ``code: uint8`` (the gRPC status code), then the UTF-8 status
  message: exactly the status the gRPC path would have ended the call with;
* ``CANCEL``   (caller -> callee): the caller gave up on the stream (deadline, caller gone).

The caller numbers its streams 1, 2, 3, ... A frame whose payload is larger than the receiver's
limit (:func:`max_payload`: one maximum-size body plus metadata) is skipped without being
buffered (:class:`FrameReader` reports it as :class:`Oversized`), and the stream fails with
``RESOURCE_EXHAUSTED``; the connection lives on. The callee holds at most
:func:`connection_budget` bytes of requests per connection (it stops reading past that) and runs
at most ``MAX_CONCURRENT_STREAMS`` of them at once. Any other malformed input (including a
REQUEST whose message does not parse, or an ERROR without a code) is a :class:`ProtocolViolation`:
the receiver closes the connection.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pysentry.errors import PysentryError
from pysentry.sidecar.limits import MIN_BUDGET, budget_for

#: ``/2``: the payloads of ``/1`` without protobuf (a ``/1`` peer and a ``/2`` one agree on h2).
ALPN = "pysentry-invoke/2"
#: ALPN lists: the fast path first (servers choose by their own order, Python's and Go's alike).
FASTPATH_ALPN = (ALPN, "h2")
GRPC_ALPN = ("h2",)

REQUEST = 1
RESPONSE = 2
ERROR = 3
CANCEL = 4
KINDS = frozenset({REQUEST, RESPONSE, ERROR, CANCEL})

MAX_STREAM_ID = 0xFFFFFFFF
#: What a frame may carry beyond the body: metadata, method, query, protobuf framing.
METADATA_ALLOWANCE = 1 << 20


def max_payload(max_body_size: int) -> int:
    """The frame limit for ``--max-body-size``: one body plus metadata (no cap, 0: 32 MiB)."""
    return (max_body_size or MIN_BUDGET) + METADATA_ALLOWANCE


def response_limit(max_payload: int) -> int:
    """The caller's limit on a RESPONSE frame when requests are limited to ``max_payload``:
    the connection budget plus metadata (as large as the gRPC path accepts, 33 MiB by default;
    the caller asked for the answer, one per call)."""
    return connection_budget(max_payload) + METADATA_ALLOWANCE


def connection_budget(max_payload: int) -> int:
    """Bytes of requests one connection may hold (read, not yet answered): the body budget of
    :mod:`.limits` for frames of ``max_payload`` bytes (two such frames, at least 32 MiB)."""
    return budget_for(max_payload)


_HEADER = struct.Struct("!IBI")
_TIMEOUT = struct.Struct("!I")
HEADER_SIZE = _HEADER.size


class ProtocolViolation(PysentryError):
    """The peer sent something this protocol does not allow; the connection must close."""


@dataclass(frozen=True, slots=True)
class Frame:
    kind: int
    stream: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Oversized:
    """A frame over the limit, skipped: only its header was kept."""

    kind: int
    stream: int
    length: int


def header(kind: int, stream: int, length: int) -> bytes:
    return _HEADER.pack(length, kind, stream)


def request_frame(
    stream: int, timeout_ms: int, message: bytes, body: bytes = b""
) -> tuple[bytes, bytes, bytes]:
    """The REQUEST frame as (header + timeout, message, body): written without joining them."""
    length = _TIMEOUT.size + len(message) + len(body)
    return _HEADER.pack(length, REQUEST, stream) + _TIMEOUT.pack(timeout_ms), message, body


def split_request(payload: bytes) -> tuple[int, bytes]:
    """(timeout in ms, the request message) of a REQUEST payload."""
    if len(payload) < _TIMEOUT.size:
        raise ProtocolViolation(f"REQUEST payload too short: {len(payload)!r} bytes")
    return _TIMEOUT.unpack_from(payload)[0], payload[_TIMEOUT.size :]


def error_frame(stream: int, code: int, message: str) -> bytes:
    data = bytes((code,)) + message.encode("utf-8", "replace")
    return _HEADER.pack(len(data), ERROR, stream) + data


def split_error(payload: bytes) -> tuple[int, str]:
    """(gRPC status code, message) of an ERROR payload."""
    if not payload:
        raise ProtocolViolation("ERROR payload is empty: no status code")
    return payload[0], payload[1:].decode("utf-8", "replace")


def cancel_frame(stream: int) -> bytes:
    return _HEADER.pack(0, CANCEL, stream)


def too_large(length: int, limit: int) -> str:
    """grpc-go's text for a message over the receive limit (code RESOURCE_EXHAUSTED)."""
    return f"grpc: received message larger than max ({length} vs. {limit})"


class FrameReader:
    """Turns received bytes into frames; payloads over ``max_payload`` are skipped."""

    def __init__(self, max_payload: int) -> None:
        self.max_payload = max_payload
        self._buf = bytearray()
        self._skip = 0

    def feed(self, data: bytes) -> list[Frame | Oversized]:
        """The frames completed by ``data``; raises :class:`ProtocolViolation`."""
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return []
            data = data[self._skip :]
            self._skip = 0
        buf = self._buf
        buf += data
        out: list[Frame | Oversized] = []
        while len(buf) >= HEADER_SIZE:
            length, kind, stream = _HEADER.unpack_from(buf)
            if kind not in KINDS:
                raise ProtocolViolation(f"unknown frame kind: {kind!r}")
            if stream == 0:
                raise ProtocolViolation("frame on stream 0")
            if length > self.max_payload:
                out.append(Oversized(kind, stream, length))
                have = len(buf) - HEADER_SIZE
                if have >= length:
                    del buf[: HEADER_SIZE + length]
                    continue
                self._skip = length - have
                buf.clear()
                break
            end = HEADER_SIZE + length
            if len(buf) < end:
                break
            out.append(Frame(kind, stream, bytes(buf[HEADER_SIZE:end])))
            del buf[:end]
        return out
