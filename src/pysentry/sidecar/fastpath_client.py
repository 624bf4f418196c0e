"""The caller's side of ``pysentry-invoke/1`` (:mod:`.fastpath_protocol`), with gRPC fallback.

:class:`FastpathInvoker` keeps one TLS connection per (address, target) and runs every call to
that peer on it, concurrently. A new connection offers ALPN ``pysentry-invoke/1`` then ``h2``,
with the *current* client SVID (rotation reaches new connections); right after the handshake,
before any byte is sent, the peer's SPIFFE ID path must be ``/ns/<ns>/<app-id>`` (any trust
domain), exactly as ``SpiffeChannel`` checks it on the gRPC path. A peer that picks ``h2`` (a Go
daprd, or a pysentry with the fast path off) gets gRPC from then on, starting on that very
connection (handed to the gRPC invoker), until a connection-level failure makes us ask again.
``max_connection_age`` recycles fast connections as it does gRPC channels: new calls dial anew,
the old connection closes when its last call ends.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from pysentry.clock import Clock, system_clock
from pysentry.errors import PeerRejected
from pysentry.pki.svid import authorize_path
from pysentry.security.tls import AnchorsLike, peer_spiffe_id
from pysentry.sidecar import fastpath_protocol as fp
from pysentry.sidecar import messages
from pysentry.sidecar.invocation import InvokeRequest, InvokeResponse, Target
from pysentry.sidecar.invoker import AdoptingInvoker, split_address
from pysentry.spiffe import dapr_path

log = logging.getLogger(__name__)

_LOST = "Connection lost"
_DEADLINE = "Deadline exceeded"
_STATUS = {s.value: s for s in Status}


class ClientConnection(asyncio.Protocol):
    """One ``pysentry-invoke/1`` connection: many streams, one per call."""

    def __init__(self, max_payload: int, *, created: float) -> None:
        self._reader = fp.FrameReader(max_payload)
        self._streams: dict[int, asyncio.Future[fp.Frame]] = {}
        self._next = 1
        self._transport: asyncio.Transport | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self.created = created
        self.inflight = 0
        self.retired = False
        self.closed = False

    # --- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._reader.feed(data)
        except fp.ProtocolViolation as err:
            log.warning("Closing the fast-path connection: %s", err)
            self.close()
            return
        for frame in frames:
            future = self._streams.get(frame.stream)
            if future is None or future.done():
                continue  # a stream we gave up on
            if isinstance(frame, fp.Oversized):
                limit = self._reader.max_payload
                text = fp.too_large(frame.length, limit)
                future.set_exception(GRPCError(Status.RESOURCE_EXHAUSTED, text))
            elif frame.kind in (fp.RESPONSE, fp.ERROR):
                future.set_result(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._writable.set()
        for future in self._streams.values():
            if not future.done():
                future.set_exception(StreamTerminatedError(_LOST))
        self._streams.clear()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        """The connection's TLS object (the peer's certificate, the negotiated ALPN id)."""
        if self._transport is None:
            return None
        found = self._transport.get_extra_info("ssl_object")
        return found if isinstance(found, ssl.SSLObject) else None

    # --- calls ----------------------------------------------------------------------------
    @property
    def usable(self) -> bool:
        return not self.closed and not self.retired and self._next < fp.MAX_STREAM_ID

    async def call(self, message: bytes, deadline: float) -> bytes:
        """The serialized response to a serialized request, by ``deadline`` (loop time); errors
        as :mod:`.invoker` says."""
        transport = self._transport
        if transport is None or self.closed:
            raise StreamTerminatedError(_LOST)
        loop = asyncio.get_running_loop()
        stream = self._next
        self._next += 1
        future: asyncio.Future[fp.Frame] = loop.create_future()
        self._streams[stream] = future
        self.inflight += 1
        try:
            async with asyncio.timeout_at(deadline):
                if not self._writable.is_set():
                    await self._writable.wait()
                    if self.closed:
                        raise StreamTerminatedError(_LOST)
                timeout_ms = max(1, round((deadline - loop.time()) * 1000))
                transport.writelines(fp.request_frame(stream, timeout_ms, message))
                frame = await future
        except BaseException:
            answered = future.done() and not future.cancelled()
            if not answered and not self.closed:
                transport.write(fp.cancel_frame(stream))  # the callee stops the app call
            raise
        finally:
            self._streams.pop(stream, None)  # connection_lost may have cleared them
            self.inflight -= 1
            if self.retired and self.inflight == 0:
                self.close()
        if frame.kind == fp.ERROR:
            code, text = fp.split_error(frame.payload)
            raise GRPCError(_STATUS.get(code, Status.UNKNOWN), text)
        return frame.payload

    def retire(self) -> None:
        self.retired = True
        if self.inflight == 0:
            self.close()

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()


class _Handshake(asyncio.Protocol):
    """Holds a fresh TLS connection until the peer's ID and the ALPN choice are known."""

    def __init__(self) -> None:
        self.early: list[bytes] = []
        self.lost = False

    def data_received(self, data: bytes) -> None:
        self.early.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


@dataclass(frozen=True, slots=True)
class Declined:
    """A verified TLS connection on which the peer chose ``h2``, for the gRPC invoker."""

    transport: asyncio.Transport
    early: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class FastpathDialer:
    """How to open a fast-path connection: the current client context (offering
    :data:`~.fastpath_protocol.FASTPATH_ALPN`), the anchors, the frame limit."""

    context: Callable[[], ssl.SSLContext]
    anchors: AnchorsLike
    max_payload: int
    clock: Clock = system_clock

    async def dial(
        self, host: str, port: int, target: Target, *, created: float
    ) -> ClientConnection | Declined:
        """A verified fast connection, or the verified connection the peer chose ``h2`` on."""
        loop = asyncio.get_running_loop()
        transport, pending = await loop.create_connection(
            _Handshake, host, port, ssl=self.context()
        )
        try:
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is None:
                raise PeerRejected("connection is not TLS: cannot verify the peer")
            authorizer = authorize_path(dapr_path(target.namespace, target.app_id))
            peer_spiffe_id(ssl_object, self.anchors, authorizer, self.clock())
            if pending.lost:
                raise StreamTerminatedError(_LOST)
            if ssl_object.selected_alpn_protocol() != fp.ALPN:
                return Declined(transport, tuple(pending.early))
        except BaseException:
            transport.abort()
            raise
        conn = ClientConnection(self.max_payload, created=created)
        transport.set_protocol(conn)
        conn.connection_made(transport)
        for data in pending.early:
            conn.data_received(data)
        return conn


def _retrieve(future: asyncio.Future[ClientConnection | None]) -> None:
    if not future.cancelled():
        future.exception()


class FastpathInvoker:
    """A :class:`~.invoker.RemoteInvoker`: ``pysentry-invoke/1`` where the peer agrees, else
    ``fallback`` (the gRPC invoker)."""

    def __init__(
        self,
        dialer: FastpathDialer,
        fallback: AdoptingInvoker,
        *,
        timeout_s: float,
        max_connection_age: timedelta | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dialer = dialer
        self._fallback = fallback
        self._timeout_s = timeout_s
        self._max_age = max_connection_age.total_seconds() if max_connection_age else None
        self._clock = clock
        self._conns: dict[tuple[str, Target], ClientConnection] = {}
        self._dialing: dict[tuple[str, Target], asyncio.Future[ClientConnection | None]] = {}
        self._grpc: set[tuple[str, Target]] = set()
        self.recycled = 0

    def connection(self, address: str, target: Target) -> ClientConnection | None:
        """The fast connection new calls to this peer use, if there is one."""
        return self._conns.get((address, target))

    def transport(self, address: str, target: Target) -> str | None:
        """The protocol in use for this peer (:data:`~.fastpath_protocol.ALPN`, ``"h2"``), or
        None before the first connection."""
        key = (address, target)
        if key in self._grpc:
            return "h2"
        return fp.ALPN if key in self._conns else None

    async def call(self, address: str, target: Target, request: InvokeRequest) -> InvokeResponse:
        key = (address, target)
        if key in self._grpc:
            return await self._fallback.call(address, target, request)
        deadline = asyncio.get_running_loop().time() + self._timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                conn = await self._connection(key)
            if conn is None:
                return await self._fallback.call(address, target, request)
            message = messages.request_to_proto(request).SerializeToString()
            reply = await conn.call(message, deadline)
        except TimeoutError as err:
            raise TimeoutError(_DEADLINE) from err  # grpclib's text, for the same answer
        return messages.response_from_proto(messages.InternalInvokeResponse.FromString(reply))

    async def _connection(self, key: tuple[str, Target]) -> ClientConnection | None:
        conn = self._conns.get(key)
        if conn is not None:
            age = self._clock() - conn.created
            if conn.usable and (self._max_age is None or age <= self._max_age):
                return conn
            del self._conns[key]
            if not conn.closed and not conn.retired:
                self.recycled += 1
            conn.retire()
        dialing = self._dialing.get(key)
        if dialing is None:
            dialing = asyncio.ensure_future(self._dial(key))
            dialing.add_done_callback(_retrieve)  # waiters may all be gone when it fails
            self._dialing[key] = dialing
        return await asyncio.shield(dialing)

    async def _dial(self, key: tuple[str, Target]) -> ClientConnection | None:
        address, target = key
        try:
            host, port = split_address(address)
            conn = await self._dialer.dial(host, port, target, created=self._clock())
        finally:
            del self._dialing[key]
        if isinstance(conn, Declined):
            log.debug("peer %s (%s) chose h2: using gRPC", address, target.app_id)
            self._grpc.add(key)
            self._fallback.adopt(address, target, conn.transport, conn.early)
            return None
        log.debug("peer %s (%s) chose %s", address, target.app_id, fp.ALPN)
        self._conns[key] = conn
        return conn

    def discard(self, address: str, target: Target) -> None:
        key = (address, target)
        conn = self._conns.pop(key, None)
        if conn is not None:
            conn.close()
        self._grpc.discard(key)  # ask again on the next connection
        self._fallback.discard(address, target)

    def close(self) -> None:
        for dialing in self._dialing.values():
            dialing.cancel()
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
        self._grpc.clear()
        self._fallback.close()
