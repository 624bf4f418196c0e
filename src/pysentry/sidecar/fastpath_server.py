"""The callee's side of ``pysentry-invoke/1`` (:mod:`.fastpath_protocol`), on the gRPC port.

:class:`FastpathServer` is the internal ``SpiffeServer`` with one more ALPN choice. The listener
context (``RotatingServerContext``, which moves each handshake to the current SVID and anchors)
offers ``pysentry-invoke/1`` before ``h2``; after the handshake a connection that agreed on
``pysentry-invoke/1`` goes to a :class:`ServerConnection`, every other one to grpclib as before.
The client's SVID is checked exactly as for gRPC (``SpiffeServer._check``: the SVID rules
against the anchors alone, the connection closed before any request on a mismatch), and every
request runs through the servicer's transport-neutral :meth:`ServiceInvocation.handle`: the same
ACL, caller-identity stamping, metrics, and the same gRPC status and message on a refusal or a
failure. An unexpected error is logged and answered as grpclib does (``UNKNOWN``, "Internal
Server Error"). A call gets the caller's deadline plus :data:`DEADLINE_GRACE_S` (the caller
stops waiting first and sends CANCEL, so a late answer never races its own timeout).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from typing import Any, cast

from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.protocol import H2Protocol

from pysentry.clock import Clock, system_clock
from pysentry.security.channel import SpiffeServer
from pysentry.security.tls import AnchorsLike
from pysentry.sidecar import fastpath_protocol as fp
from pysentry.sidecar import messages
from pysentry.sidecar.internal_server import NO_CLIENT_ID
from pysentry.sidecar.invocation import InvokeRequest, InvokeResponse
from pysentry.spiffe import SpiffeId

log = logging.getLogger(__name__)

Handle = Callable[[SpiffeId | None, InvokeRequest], Awaitable[InvokeResponse]]

DEADLINE_GRACE_S = 1.0
#: Streams one connection may run at once; past that the connection stops being read (the
#: requests already read wait their turn).
MAX_CONCURRENT_STREAMS = 1000


class ServerConnection(asyncio.Protocol):
    """One ``pysentry-invoke/1`` connection from a verified peer sidecar."""

    def __init__(
        self,
        handle: Handle,
        peer: SpiffeId | None,
        *,
        max_payload: int,
        on_lost: Callable[[ServerConnection], None] = lambda _: None,
    ) -> None:
        self._handle = handle
        self._on_lost = on_lost
        self._peer = peer
        self._reader = fp.FrameReader(max_payload)
        self._transport: asyncio.Transport | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self._paused = False
        self._waiting: dict[int, fp.Frame] = {}  # read past the stream limit, in arrival order
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.served = 0

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        """The connection's TLS object (the peer's certificate, the negotiated ALPN id)."""
        if self._transport is None:
            return None
        found = self._transport.get_extra_info("ssl_object")
        return found if isinstance(found, ssl.SSLObject) else None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._reader.feed(data)
            for frame in frames:
                self._dispatch(frame)
        except fp.ProtocolViolation as err:
            log.warning("Closing the fast-path connection from %s: %s", self._peer, err)
            self.close()

    def _dispatch(self, frame: fp.Frame | fp.Oversized) -> None:
        if frame.kind == fp.CANCEL:
            task = self.tasks.get(frame.stream)
            if task is not None:
                task.cancel()
            self._waiting.pop(frame.stream, None)
            return
        if frame.kind != fp.REQUEST:
            raise fp.ProtocolViolation(f"a client may not send frame kind {frame.kind!r}")
        if frame.stream in self.tasks or frame.stream in self._waiting:
            raise fp.ProtocolViolation(f"stream {frame.stream!r} is already open")
        if isinstance(frame, fp.Oversized):
            text = fp.too_large(frame.length, self._reader.max_payload)
            self._write(fp.error_frame(frame.stream, Status.RESOURCE_EXHAUSTED.value, text))
        elif len(self.tasks) < MAX_CONCURRENT_STREAMS:
            self._start(frame)
        else:  # at the limit: keep it (and what is already read) and stop reading
            self._waiting[frame.stream] = frame
            if not self._paused and self._transport is not None:
                self._paused = True
                self._transport.pause_reading()

    def _start(self, frame: fp.Frame) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(frame.stream, frame.payload))
        self.tasks[frame.stream] = task
        task.add_done_callback(lambda _: self._done(frame.stream))

    def _done(self, stream: int) -> None:
        del self.tasks[stream]
        self.served += 1
        while self._waiting and len(self.tasks) < MAX_CONCURRENT_STREAMS:
            self._start(self._waiting.pop(next(iter(self._waiting))))
        transport = self._transport
        if self._paused and not self._waiting and transport is not None:
            self._paused = False
            if not transport.is_closing():
                transport.resume_reading()

    async def _serve(self, stream: int, payload: bytes) -> None:
        try:
            timeout_ms, body = fp.split_request(payload)
            timeout = timeout_ms / 1000 + DEADLINE_GRACE_S if timeout_ms else None
            async with asyncio.timeout(timeout):
                if self._peer is None:
                    raise GRPCError(Status.UNAUTHENTICATED, NO_CLIENT_ID)
                request = messages.request_from_proto(
                    messages.InternalInvokeRequest.FromString(body)
                )
                response = await self._handle(self._peer, request)
            out = messages.response_to_proto(response).SerializeToString()
            frame: tuple[bytes, ...] = (fp.header(fp.RESPONSE, stream, len(out)), out)
        except GRPCError as err:
            frame = (fp.error_frame(stream, err.status.value, err.message or ""),)
        except TimeoutError:
            log.info("Deadline exceeded")
            frame = (fp.error_frame(stream, Status.DEADLINE_EXCEEDED.value, ""),)
        except Exception:
            log.exception("Application error")
            frame = (fp.error_frame(stream, Status.UNKNOWN.value, "Internal Server Error"),)
        if not self._writable.is_set():
            await self._writable.wait()
        self._write(*frame)

    def _write(self, *data: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.writelines(data)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._waiting.clear()
        self._writable.set()
        for task in self.tasks.values():
            task.cancel()
        self._on_lost(self)

    def close(self) -> None:
        self._waiting.clear()
        for task in self.tasks.values():
            task.cancel()
        if self._transport is not None:
            self._transport.close()


class _Negotiated(asyncio.Protocol):
    """Hands a new connection to grpclib or to the fast path, by the ALPN choice."""

    def __init__(self, grpc: asyncio.Protocol, server: FastpathServer) -> None:
        self._grpc = grpc
        self._server = server

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, base)  # uvloop's is not a subclass
        ssl_object = transport.get_extra_info("ssl_object")
        chosen: asyncio.Protocol = self._grpc
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == fp.ALPN:
            fast = self._server.accept_fast(transport)
            if fast is None:
                transport.abort()
                return
            chosen = fast
        else:
            self._server.accepted["h2"] += 1
        transport.set_protocol(chosen)
        chosen.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        pass  # refused before a protocol was chosen


class FastpathServer(SpiffeServer):
    """The internal server: gRPC (``h2``) and ``pysentry-invoke/1`` on one mTLS listener."""

    def __init__(
        self,
        handlers: Collection[Any],
        *,
        handle: Handle,
        anchors: AnchorsLike,
        max_payload: int,
        clock: Clock = system_clock,
        **kwargs: Any,
    ) -> None:
        super().__init__(handlers, anchors=anchors, clock=clock, **kwargs)
        self._handle = handle
        self._max_payload = max_payload
        self._fast: set[ServerConnection] = set()
        self._closing: list[asyncio.Task[None]] = []
        #: Connections accepted, by negotiated protocol (``h2``, ``pysentry-invoke/1``).
        self.accepted: Counter[str] = Counter()

    @property
    def connections(self) -> tuple[ServerConnection, ...]:
        """The open ``pysentry-invoke/1`` connections."""
        return tuple(self._fast)

    def _protocol_factory(self) -> H2Protocol:
        grpc = super()._protocol_factory()
        return cast(H2Protocol, _Negotiated(grpc, self))

    def accept_fast(self, transport: asyncio.Transport) -> ServerConnection | None:
        if not self._check(transport):
            return None
        ssl_object = transport.get_extra_info("ssl_object")
        peer = self._peers.get(ssl_object)
        log.debug("Accepted a %s connection from %s", fp.ALPN, peer)
        self.accepted[fp.ALPN] += 1
        conn = ServerConnection(
            self._handle, peer, max_payload=self._max_payload, on_lost=self._fast.discard
        )
        self._fast.add(conn)
        return conn

    def close(self) -> None:
        super().close()
        for conn in list(self._fast):
            self._closing.extend(conn.tasks.values())
            conn.close()

    async def wait_closed(self) -> None:
        await super().wait_closed()
        if self._closing:
            await asyncio.wait(self._closing)
