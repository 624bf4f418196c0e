"""One gRPC call relayed as opaque bytes: messages, metadata and status, both ways.

:func:`relay` pumps a server stream (the caller's call to this sidecar) into a new call on a
client channel (to the next sidecar, or to the gRPC app) and back: request messages as they come,
then the response's initial metadata, messages and trailers. The deadline carries over
(:data:`DEFAULT_TIMEOUT_S` without one). A broken connection is ``UNAVAILABLE failed to proxy
request: ...``; a ``GRPCError`` from the other side passes through. Which calls are relayed, and
with what metadata, is :mod:`pysentry.sidecar.grpc_proxy`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from grpclib.client import Channel
from grpclib.client import Stream as ClientStream
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError
from grpclib.server import Stream as ServerStream

DEFAULT_TIMEOUT_S = 60.0


class RawMessage:
    """A gRPC message relayed as opaque bytes (quacks like a protobuf message for grpclib)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes = b"") -> None:
        self.data = data

    def SerializeToString(self) -> bytes:
        return self.data

    @classmethod
    def FromString(cls, data: bytes) -> RawMessage:
        return cls(bytes(data))


def relay_handler(func: Callable[[ServerStream[Any, Any]], Any]) -> Handler:
    return Handler(func, Cardinality.STREAM_STREAM, RawMessage, RawMessage)


def _timeout(stream: ServerStream[Any, Any]) -> float:
    deadline = stream.deadline
    return deadline.time_remaining() if deadline is not None else DEFAULT_TIMEOUT_S


async def relay(
    down: ServerStream[Any, Any], channel: Channel, path: str, metadata: list[tuple[str, str]]
) -> None:
    """Pump one call both ways between the server stream ``down`` and a new call on ``channel``."""
    up: ClientStream[RawMessage, RawMessage] = channel.request(
        path,
        Cardinality.STREAM_STREAM,
        RawMessage,
        RawMessage,
        timeout=_timeout(down),
        metadata=metadata,
    )
    try:
        async with up:
            await up.send_request()

            async def forward() -> None:
                async for message in down:
                    await up.send_message(message)
                await up.end()

            sender = asyncio.create_task(forward())
            try:
                await up.recv_initial_metadata()
                headers = [
                    (k, v)
                    for k, v in (up.initial_metadata or {}).items()
                    if not k.startswith(":") and k != "content-type"
                ]
                await down.send_initial_metadata(metadata=headers)
                while (message := await up.recv_message()) is not None:
                    await down.send_message(message)
                await up.recv_trailing_metadata()
                await sender
            finally:
                if not sender.done():
                    sender.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await sender
    except GRPCError:
        raise
    except (OSError, ProtocolError, StreamTerminatedError, TimeoutError) as err:
        raise GRPCError(Status.UNAVAILABLE, f"failed to proxy request: {err}") from err
