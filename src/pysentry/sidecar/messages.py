"""The gRPC edge: ``dapr.proto.internals.v1`` messages <-> :mod:`.invocation` dataclasses.

Wire conventions follow daprd (spec §10): the HTTP verb and query ride in ``http_extension``;
headers travel as ``metadata`` (``map<string, ListStringValue>``); the app's HTTP status is the
response ``status.code``; bodies are ``Any{value: <bytes>}`` (unary) or ``StreamPayload`` chunks
of at most 2 KiB with ``seq`` counting from 0 (streaming).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from http import HTTPStatus
from typing import cast

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from pysentry.config.method import encode_method
from pysentry.proto.dapr.proto.common.v1 import common_pb2
from pysentry.proto.dapr.proto.internals.v1 import (
    apiversion_pb2,
    service_invocation_pb2,
    status_pb2,
)
from pysentry.sidecar.invocation import Headers, InvokeRequest, InvokeResponse

InternalInvokeRequest = service_invocation_pb2.InternalInvokeRequest
InternalInvokeResponse = service_invocation_pb2.InternalInvokeResponse
RequestStream = service_invocation_pb2.InternalInvokeRequestStream
ResponseStream = service_invocation_pb2.InternalInvokeResponseStream

#: daprd's ``StreamBufferSize`` (``2 << 10``).
CHUNK_SIZE = 2 << 10

_Verb = common_pb2.HTTPExtension.Verb
# Looked up once: the protobuf enum wrapper and HTTPStatus() cost microseconds per call.
_VERB_NAMES: dict[int, str] = {number: name for name, number in _Verb.items()}
_VERB_NUMBERS: dict[str, int] = dict(_Verb.items())
_PHRASES: dict[int, str] = {s.value: s.phrase for s in HTTPStatus}


def _metadata_to_headers(metadata: Mapping[str, service_invocation_pb2.ListStringValue]) -> Headers:
    return tuple((key.lower(), value) for key in sorted(metadata) for value in metadata[key].values)


def _fill_metadata(
    target: Mapping[str, service_invocation_pb2.ListStringValue], headers: Iterable[tuple[str, str]]
) -> None:
    for name, value in headers:
        target[name].values.append(value)


def request_to_proto(request: InvokeRequest, *, with_body: bool = True) -> InternalInvokeRequest:
    msg = InternalInvokeRequest(ver=apiversion_pb2.V1)
    _fill_metadata(msg.metadata, request.headers)
    m = msg.message
    m.method = encode_method(request.method)
    m.content_type = request.content_type
    number = _VERB_NUMBERS.get(request.verb)
    if number is None:
        number = _Verb.Value(request.verb)  # raises ValueError, as before
    m.http_extension.verb = cast("common_pb2.HTTPExtension.Verb", number)
    m.http_extension.querystring = request.query
    if with_body:
        m.data.value = request.body
    return msg


def request_from_proto(msg: InternalInvokeRequest, body: bytes | None = None) -> InvokeRequest:
    """Raises ``GRPCError(INVALID_ARGUMENT)`` as daprd's HTTP channel does."""
    m = msg.message
    if not msg.HasField("message"):
        raise GRPCError(Status.INVALID_ARGUMENT, "invalid request: missing message")
    if not m.HasField("http_extension"):
        raise GRPCError(Status.INVALID_ARGUMENT, "missing HTTP extension field")
    verb = _VERB_NAMES.get(m.http_extension.verb) or _Verb.Name(m.http_extension.verb)
    if verb in ("NONE", "CONNECT"):
        raise GRPCError(Status.INVALID_ARGUMENT, "invalid HTTP verb")
    return InvokeRequest(
        method=m.method,
        verb=verb,
        query=m.http_extension.querystring,
        content_type=m.content_type,
        headers=_metadata_to_headers(msg.metadata),
        body=m.data.value if body is None else body,
    )


def response_to_proto(
    response: InvokeResponse, *, with_body: bool = True
) -> InternalInvokeResponse:
    text = _PHRASES.get(response.status, "")
    msg = InternalInvokeResponse(status=status_pb2.Status(code=response.status, message=text))
    _fill_metadata(msg.headers, response.headers)
    msg.message.content_type = response.content_type
    if with_body:
        msg.message.data.value = response.body
    return msg


def response_from_proto(msg: InternalInvokeResponse, body: bytes | None = None) -> InvokeResponse:
    return InvokeResponse(
        status=msg.status.code or 200,
        headers=_metadata_to_headers(msg.headers),
        content_type=msg.message.content_type,
        body=msg.message.data.value if body is None else body,
    )


def chunks(body: bytes, start: int = 0) -> Iterator[common_pb2.StreamPayload]:
    """``StreamPayload`` messages of at most :data:`CHUNK_SIZE` bytes from ``start`` (a multiple
    of the chunk size), ``seq`` counting from ``start // CHUNK_SIZE``."""
    for seq, at in enumerate(range(start, len(body), CHUNK_SIZE), start // CHUNK_SIZE):
        yield common_pb2.StreamPayload(data=body[at : at + CHUNK_SIZE], seq=seq)


def request_stream(request: InvokeRequest) -> Iterator[RequestStream]:
    """The CallLocalStream request messages: the header (+ first chunk), then the rest."""
    head = RequestStream(request=request_to_proto(request, with_body=False))
    if request.body:
        head.payload.data = request.body[:CHUNK_SIZE]  # seq 0, the proto3 default
    yield head
    for part in chunks(request.body, CHUNK_SIZE):
        yield RequestStream(payload=part)


def response_stream(response: InvokeResponse) -> Iterator[ResponseStream]:
    head = ResponseStream(response=response_to_proto(response, with_body=False))
    if response.body:
        head.payload.data = response.body[:CHUNK_SIZE]  # seq 0, the proto3 default
    yield head
    for part in chunks(response.body, CHUNK_SIZE):
        yield ResponseStream(payload=part)


class PayloadAssembler:
    """Reassembles stream payloads, enforcing ``seq`` order (0, 1, 2, ...)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def add(self, payload: common_pb2.StreamPayload) -> None:
        if payload.seq != len(self._parts):
            raise GRPCError(
                Status.INVALID_ARGUMENT,
                f"invalid stream payload: expected seq {len(self._parts)}, got {payload.seq}",
            )
        self._parts.append(payload.data)

    def body(self) -> bytes:
        return b"".join(self._parts)


def go_error_text(err: GRPCError) -> str:
    """How a Go gRPC client prints a status error: ``rpc error: code = X desc = Y``."""
    code = "".join(word.capitalize() for word in err.status.name.split("_"))
    return f"rpc error: code = {code} desc = {err.message or ''}"
