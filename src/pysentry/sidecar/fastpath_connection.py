"""One ``pysentry-invoke/2`` connection on the caller's side, and how it is opened.

:class:`FastpathDialer` opens a TLS connection with the *current* client context (ALPN
``pysentry-invoke/2`` then ``h2``) and, right after the handshake and before any byte is sent,
checks the peer's SPIFFE ID path ``/ns/<ns>/<app-id>`` (any trust domain), exactly as
``SpiffeChannel`` does on the gRPC path. It returns a :class:`ClientConnection` when the peer
agreed on ``pysentry-invoke/2``, else the verified connection as :class:`Declined` (for gRPC).
A :class:`ClientConnection` runs any number of concurrent calls, one stream each. A server frame
the protocol does not allow (REQUEST, CANCEL, an ERROR without a code) closes the connection and
fails its calls with ``StreamTerminatedError``, as a lost connection does.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from pysentry.clock import Clock, system_clock
from pysentry.errors import PeerRejected
from pysentry.pki.svid import authorize_path
from pysentry.security.tls import AnchorsLike, peer_spiffe_id
from pysentry.sidecar import fastpath_protocol as fp
from pysentry.sidecar.invocation import Target
from pysentry.spiffe import dapr_path

log = logging.getLogger(__name__)

LOST = "Connection lost"  # grpclib's StreamTerminatedError text
_STATUS = {s.value: s for s in Status}


class ClientConnection(asyncio.Protocol):
    """One ``pysentry-invoke/2`` connection: many streams, one per call."""

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
        if self.closed:
            return
        try:
            frames = self._reader.feed(data)
            for frame in frames:
                _check(frame)
        except fp.ProtocolViolation as err:
            log.warning("Closing the fast-path connection: %s", err)
            self._fail()
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

    def _fail(self) -> None:
        """Close now and fail every call as a lost connection does."""
        if self._transport is not None:
            self._transport.abort()
        self.connection_lost(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._writable.set()
        for future in self._streams.values():
            if not future.done():
                future.set_exception(StreamTerminatedError(LOST))
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

    async def call(self, message: bytes, deadline: float, body: bytes = b"") -> bytes:
        """The response payload to a request payload (``message`` then ``body``), by
        ``deadline`` (loop time); errors as :mod:`.invoker` says."""
        transport = self._transport
        if transport is None or self.closed:
            raise StreamTerminatedError(LOST)
        loop = asyncio.get_running_loop()
        stream = self._next
        self._next += 1
        future: asyncio.Future[fp.Frame] = loop.create_future()
        self._streams[stream] = future
        self.inflight += 1
        # One timer that fails the future, not an asyncio.timeout (a context, a task
        # cancel and uncancel per call): only the future and a full buffer are waited on.
        timer = loop.call_at(deadline, _expire, future)
        try:
            if not self._writable.is_set():
                await _wait_writable(self._writable, future)
                if self.closed:
                    raise StreamTerminatedError(LOST)
            timeout_ms = max(1, round((deadline - loop.time()) * 1000))
            transport.writelines(fp.request_frame(stream, timeout_ms, message, body))
            frame = await future
        except BaseException:
            if not _answered(future) and not self.closed:
                transport.write(fp.cancel_frame(stream))  # the callee stops the app call
            raise
        finally:
            timer.cancel()
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


def _answered(future: asyncio.Future[fp.Frame]) -> bool:
    """The callee answered (or the connection failed the call), not the deadline."""
    if not future.done() or future.cancelled():
        return False
    return not isinstance(future.exception(), TimeoutError)


def _expire(future: asyncio.Future[fp.Frame]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


async def _wait_writable(writable: asyncio.Event, future: asyncio.Future[fp.Frame]) -> None:
    """Until the transport takes writes again, or ``future`` fails (the deadline, the
    connection lost): then raise its error."""
    waiter = asyncio.ensure_future(writable.wait())
    try:
        await asyncio.wait((waiter, future), return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if future.done():
        future.result()  # raises: nothing else completes it before the request is sent


def _check(frame: fp.Frame | fp.Oversized) -> None:
    if frame.kind not in (fp.RESPONSE, fp.ERROR):
        raise fp.ProtocolViolation(f"a server may not send frame kind {frame.kind!r}")
    if frame.kind == fp.ERROR and isinstance(frame, fp.Frame):
        fp.split_error(frame.payload)  # raises on an ERROR without a code


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
    :data:`~.fastpath_protocol.FASTPATH_ALPN`), the anchors, the request frame limit (the
    responses' is :func:`~.fastpath_protocol.response_limit` of it unless ``max_response``)."""

    context: Callable[[], ssl.SSLContext]
    anchors: AnchorsLike
    max_payload: int
    clock: Clock = system_clock
    max_response: int | None = None

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
                raise StreamTerminatedError(LOST)
            if ssl_object.selected_alpn_protocol() != fp.ALPN:
                return Declined(transport, tuple(pending.early))
        except BaseException:
            transport.abort()
            raise
        limit = self.max_response or fp.response_limit(self.max_payload)
        conn = ClientConnection(limit, created=created)
        transport.set_protocol(conn)
        conn.connection_made(transport)
        for data in pending.early:
            conn.data_received(data)
        return conn
