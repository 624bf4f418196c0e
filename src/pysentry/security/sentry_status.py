"""What grpclib's client makes of a unary call's response: the message, or the ``GRPCError``
(HTTP ``:status``, ``content-type``, ``grpc-status``/``grpc-message``), ``NotImplementedError``
(a compressed message) or :class:`WireError` (no message, or a truncated one) it raises."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import unquote

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from pysentry.security.sentry_wire import WireError

if TYPE_CHECKING:
    from pysentry.security.sentry_h2 import Exchange

GRPC_CONTENT_TYPE = "application/grpc"
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
