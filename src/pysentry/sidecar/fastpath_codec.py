"""The call payloads of ``pysentry-invoke/2`` (:mod:`.fastpath_protocol`): no protobuf, no I/O.

``/1`` carried serialized ``InternalInvokeRequest``/``InternalInvokeResponse`` messages; building
and reading those from Python cost about 40 us per call (both sidecars), a twentieth of the
sidecars' CPU per request. ``/2`` carries the same fields as length-prefixed UTF-8 strings,
all integers big-endian::

    REQUEST  (after timeout_ms): verb u8 | count u32 | count x length u32
                                 | method | query | content type | name, value, ... | body
    RESPONSE:                    status u32 | count u32 | count x length u32
                                 | content type | name, value, ... | body

``method`` is written as on the gRPC wire (:func:`~pysentry.config.method.encode_method`); the
body is the rest of the payload. The receiver sees exactly what the gRPC path's
:mod:`.messages` gives it: headers sorted by name (a protobuf map's order, values of one name
in their order), names lower-cased, status 0 read as 200, ``NONE``/``CONNECT`` refused with
``INVALID_ARGUMENT "invalid HTTP verb"``. A payload that does not parse is a
:class:`~.fastpath_protocol.ProtocolViolation` (the connection closes).
"""

from __future__ import annotations

import struct
from itertools import accumulate, pairwise
from operator import itemgetter

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from pysentry.config.method import encode_method
from pysentry.sidecar.fastpath_protocol import ProtocolViolation
from pysentry.sidecar.invocation import VERBS, Headers, InvokeRequest, InvokeResponse

#: ``common.v1.HTTPExtension.Verb`` numbers (NONE = 0), as on the gRPC wire.
VERB_NUMBERS: dict[str, int] = {verb: number for number, verb in enumerate(VERBS, 1)}
_VERB_NAMES: dict[int, str] = {number: verb for verb, number in VERB_NUMBERS.items()}
_REFUSED_VERBS = frozenset({0, VERB_NUMBERS["CONNECT"]})
_REQUEST_HEAD = struct.Struct("!BI")
_RESPONSE_HEAD = struct.Struct("!II")
_LENGTH = 4
_by_name = itemgetter(0)


def _strings(head: bytes, strings: list[str], body: bytes) -> tuple[bytes, bytes]:
    encoded = [s.encode() for s in strings]
    lengths = struct.pack(f"!{len(encoded)}I", *map(len, encoded))
    return b"".join((head, lengths, *encoded)), body


def _flat(first: list[str], headers: Headers) -> list[str]:
    for name, value in headers:
        first.append(name)
        first.append(value)
    return first


def encode_request(request: InvokeRequest) -> tuple[bytes, bytes]:
    """(everything but the body, the body): written one after the other."""
    strings = _flat(
        [encode_method(request.method), request.query, request.content_type], request.headers
    )
    head = _REQUEST_HEAD.pack(VERB_NUMBERS[request.verb], len(strings))
    return _strings(head, strings, request.body)


def encode_response(response: InvokeResponse) -> tuple[bytes, bytes]:
    strings = _flat([response.content_type], response.headers)
    head = _RESPONSE_HEAD.pack(response.status, len(strings))
    return _strings(head, strings, response.body)


def _read(payload: bytes, at: int, count: int, least: int) -> tuple[list[str], int]:
    """``count`` strings from ``at`` (at least ``least``, an odd number of header strings
    after them refused), and where the body starts."""
    if count < least or (count - least) % 2:
        raise ProtocolViolation(f"fast-path payload: {count!r} strings")
    start = at + _LENGTH * count
    if start > len(payload):
        raise ProtocolViolation(f"fast-path payload: {len(payload)!r} bytes, too short")
    ends = list(accumulate(struct.unpack_from(f"!{count}I", payload, at), initial=0))
    body_at = start + ends[-1]
    if body_at > len(payload):
        raise ProtocolViolation(f"fast-path payload: {len(payload)!r} bytes, too short")
    region = payload[start:body_at]
    try:
        if region.isascii():  # one decode, then slices: byte offsets are character offsets
            text = region.decode("ascii")
            return [text[a:b] for a, b in pairwise(ends)], body_at
        return [region[a:b].decode() for a, b in pairwise(ends)], body_at
    except UnicodeDecodeError as err:
        raise ProtocolViolation(f"fast-path payload: a string is not UTF-8: {err}") from err


def _headers(strings: list[str], start: int) -> Headers:
    names = strings[start::2]
    pairs = list(zip(names, strings[start + 1 :: 2], strict=True))
    pairs.sort(key=_by_name)  # stable: the values of one name keep their order
    joined = "".join(names)
    if joined.lower() == joined:
        return tuple(pairs)
    return tuple((name.lower(), value) for name, value in pairs)


def decode_request(message: bytes) -> InvokeRequest:
    """Raises ``GRPCError(INVALID_ARGUMENT)`` for the verbs daprd's HTTP channel refuses."""
    if len(message) < _REQUEST_HEAD.size:
        raise ProtocolViolation(f"fast-path request: {len(message)!r} bytes, too short")
    number, count = _REQUEST_HEAD.unpack_from(message)
    strings, body_at = _read(message, _REQUEST_HEAD.size, count, 3)
    if number in _REFUSED_VERBS:
        raise GRPCError(Status.INVALID_ARGUMENT, "invalid HTTP verb")
    verb = _VERB_NAMES.get(number)
    if verb is None:
        raise ProtocolViolation(f"fast-path request: unknown verb {number!r}")
    return InvokeRequest(
        strings[0], verb, strings[1], strings[2], _headers(strings, 3), message[body_at:]
    )


def decode_response(message: bytes) -> InvokeResponse:
    if len(message) < _RESPONSE_HEAD.size:
        raise ProtocolViolation(f"fast-path response: {len(message)!r} bytes, too short")
    status, count = _RESPONSE_HEAD.unpack_from(message)
    strings, body_at = _read(message, _RESPONSE_HEAD.size, count, 1)
    return InvokeResponse(status or 200, _headers(strings, 1), strings[0], message[body_at:])
