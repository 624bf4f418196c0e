"""Dapr's gRPC server metrics on a grpclib server (``pkg/diagnostics/grpc_monitoring.go``).

As daprd's interceptors (``pkg/api/grpc/server.go``):

* every **unary** RPC, on the API server and on the internal server, records
  ``dapr_grpc_io_server_completed_rpcs``, ``..._server_latency`` and the request/response bytes
  (the serialized message sizes; 0 response bytes on an error);
* on the **API** server a **streamed** call that carries ``dapr-app-id`` (gRPC proxying) records
  the count and latency only;
* streamed calls on the internal server (``CallLocalStream``, proxied calls, which reach it
  without ``dapr-app-id``) record nothing, as in Dapr.

The status label is Go's ``codes.Code`` name (``OK``, ``Unimplemented``, ``PermissionDenied``).
Sizes come from the codec (the wire bytes it decodes and encodes), found through a context
variable set for the call's task: no re-serialization.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from typing import Any

from grpclib.const import Cardinality, Handler, Status
from grpclib.encoding.base import CodecBase
from grpclib.encoding.proto import ProtoCodec
from grpclib.exceptions import GRPCError
from grpclib.server import Server, Stream

from pysentry.sidecar.metrics import SidecarMetrics

PROXY_APP_ID = "dapr-app-id"
#: Go's ``codes.Code.String()`` for each status.
GO_CODE = {
    s: "Canceled" if s is Status.CANCELLED else "".join(w.capitalize() for w in s.name.split("_"))
    for s in Status
}
_CACHE_LIMIT = 1024
_sizes: ContextVar[list[int] | None] = ContextVar("pysentry_grpc_sizes", default=None)


class MeasuringCodec(CodecBase):
    """``ProtoCodec`` (or any codec) that adds each message's wire size to the current call."""

    def __init__(self, inner: CodecBase) -> None:
        self._inner = inner

    @property
    def __content_subtype__(self) -> str:
        return self._inner.__content_subtype__

    def encode(self, message: Any, message_type: Any) -> bytes:
        data = self._inner.encode(message, message_type)
        sizes = _sizes.get()
        if sizes is not None:
            sizes[1] += len(data)
        return data

    def decode(self, data: bytes, message_type: Any) -> Any:
        sizes = _sizes.get()
        if sizes is not None:
            sizes[0] += len(data)
        return self._inner.decode(data, message_type)


def _status(err: BaseException, stream: Stream[Any, Any]) -> str:
    if isinstance(err, GRPCError):
        return GO_CODE[err.status]
    if isinstance(err, asyncio.CancelledError | TimeoutError):
        deadline = stream.deadline
        expired = deadline is not None and deadline.time_remaining() <= 0
        return "DeadlineExceeded" if expired else "Canceled"
    return "Unknown"


Func = Callable[[Stream[Any, Any]], Coroutine[Any, Any, None]]


def _unary(func: Func, path: str, metrics: SidecarMetrics) -> Func:
    async def measured(stream: Stream[Any, Any]) -> None:
        sizes = [0, 0]
        token = _sizes.set(sizes)
        start = time.perf_counter()
        status = "OK"
        try:
            await func(stream)
        except BaseException as err:
            status = _status(err, stream)
            sizes[1] = 0
            raise
        finally:
            _sizes.reset(token)
            metrics.grpc_served(path, status, sizes[0], sizes[1], start)

    return measured


def _proxied(func: Func, path: str, metrics: SidecarMetrics) -> Func:
    async def measured(stream: Stream[Any, Any]) -> None:
        if PROXY_APP_ID not in (stream.metadata or {}):
            await func(stream)
            return
        start = time.perf_counter()
        status = "OK"
        try:
            await func(stream)
        except BaseException as err:
            status = _status(err, stream)
            raise
        finally:
            metrics.grpc_served(path, status, None, 0, start)

    return measured


class _MeasuredMapping(dict[str, Handler]):
    """Wraps a server's method table (grpclib looks handlers up with ``.get``)."""

    def __init__(self, inner: Any, metrics: SidecarMetrics, *, api: bool) -> None:
        super().__init__()
        self._inner = inner
        self._metrics = metrics
        self._api = api

    def get(self, key: str, default: Any = None) -> Any:
        found = super().get(key)
        if found is not None:
            return found
        handler = self._inner.get(key)
        if handler is None:
            return default
        if handler.cardinality is Cardinality.UNARY_UNARY:
            func = _unary(handler.func, key, self._metrics)
        elif self._api:
            func = _proxied(handler.func, key, self._metrics)
        else:
            func = handler.func
        measured = handler._replace(func=func)
        if len(self) < _CACHE_LIMIT:
            self[key] = measured
        return measured


def instrument(server: Server, metrics: SidecarMetrics, *, api: bool) -> Server:
    """Record Dapr's gRPC server metrics for ``server`` (call before ``start``); ``api`` picks
    the API server's rules over the internal server's."""
    server._mapping = _MeasuredMapping(server._mapping, metrics, api=api)
    codec = server._codec if server._codec is not None else ProtoCodec()
    server._codec = MeasuringCodec(codec)
    return server
