"""One accepted ``pysentry-invoke/2`` connection (:mod:`.fastpath_protocol`): the callee's side of
each call on it.

:class:`ServerConnection` reads the frames of a connection whose peer
:class:`~.fastpath_server.FastpathServer` has verified, and runs every request through the
servicer's transport-neutral :meth:`ServiceInvocation.handle`: the same ACL, caller-identity
stamping, metrics, and the same gRPC status and message on a refusal or a failure. An unexpected
error is logged and answered as grpclib does (``UNKNOWN``, "Internal Server Error"; a
``TimeoutError`` is ``DEADLINE_EXCEEDED`` only once the deadline has passed). Bad input from the
peer (a malformed frame or request message) closes the connection, with one rate-limited
warning. A connection holds at most :func:`~.fastpath_protocol.connection_budget` bytes of
requests and runs at most :data:`MAX_CONCURRENT_STREAMS` at once: past either it is not read
until calls end (the peer's writes back up in TCP). A call gets the caller's deadline plus
:data:`DEADLINE_GRACE_S` (the caller stops waiting first and sends CANCEL, so a late answer
never races its own timeout). It logs as :mod:`.fastpath_server` (scope
``dapr.runtime.grpc.internal``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import cast

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from pysentry.sidecar import fastpath_codec as codec
from pysentry.sidecar import fastpath_protocol as fp
from pysentry.sidecar.internal_server import NO_CLIENT_ID
from pysentry.sidecar.invocation import InvokeRequest, InvokeResponse
from pysentry.spiffe import SpiffeId

log = logging.getLogger("pysentry.sidecar.fastpath_server")

Handle = Callable[[SpiffeId | None, InvokeRequest], Awaitable[InvokeResponse]]

DEADLINE_GRACE_S = 1.0
#: Streams one connection may run at once (grpc-go's and h2's default); past that the
#: connection stops being read (the requests already read wait their turn).
MAX_CONCURRENT_STREAMS = 100
#: At most one warning about a peer's bad input per this many seconds (the rest are counted).
WARN_EVERY_S = 10.0
_warned = [-WARN_EVERY_S, 0]  # when last warned, warnings suppressed since


def _warn_violation(peer: SpiffeId | None, err: Exception) -> None:
    now = time.monotonic()
    if now - _warned[0] < WARN_EVERY_S:
        _warned[1] += 1
        return
    more = f" ({_warned[1]} more since the last warning)" if _warned[1] else ""
    _warned[0], _warned[1] = now, 0
    log.warning("Closing the fast-path connection from %s: %s%s", peer, err, more)


class ServerConnection(asyncio.Protocol):
    """One ``pysentry-invoke/2`` connection from a verified peer sidecar."""

    def __init__(
        self,
        handle: Handle,
        peer: SpiffeId | None,
        *,
        max_payload: int,
        budget: int | None = None,
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
        self._expired: set[int] = set()  # streams whose deadline cancelled them
        self.served = 0
        #: Request bytes read and not yet answered (running or waiting), their cap and peak.
        self.budget = fp.connection_budget(max_payload) if budget is None else budget
        self.held = 0
        self.peak_held = 0
        self._sizes: dict[int, int] = {}

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
        if self._transport is None or self._transport.is_closing():
            return  # closed for bad input: nothing more is read
        try:
            frames = self._reader.feed(data)
            for frame in frames:
                self._dispatch(frame)
        except fp.ProtocolViolation as err:
            self._violation(err)

    def _violation(self, err: Exception) -> None:
        if self._transport is not None and not self._transport.is_closing():
            _warn_violation(self._peer, err)
        self.close()

    def _dispatch(self, frame: fp.Frame | fp.Oversized) -> None:
        if frame.kind == fp.CANCEL:
            task = self.tasks.get(frame.stream)
            if task is not None:
                task.cancel()
            if self._waiting.pop(frame.stream, None) is not None:
                self._release(frame.stream)
            return
        if frame.kind != fp.REQUEST:
            raise fp.ProtocolViolation(f"a client may not send frame kind {frame.kind!r}")
        if frame.stream in self.tasks or frame.stream in self._waiting:
            raise fp.ProtocolViolation(f"stream {frame.stream!r} is already open")
        if isinstance(frame, fp.Oversized):
            text = fp.too_large(frame.length, self._reader.max_payload)
            self._write(fp.error_frame(frame.stream, Status.RESOURCE_EXHAUSTED.value, text))
            return
        size = len(frame.payload)
        self._sizes[frame.stream] = size
        self.held += size
        self.peak_held = max(self.peak_held, self.held)
        if len(self.tasks) < MAX_CONCURRENT_STREAMS:
            self._start(frame)
        else:  # at the stream limit: keep it (and what is already read) and stop reading
            self._waiting[frame.stream] = frame
        full = self._waiting or self.held >= self.budget
        if full and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def _release(self, stream: int) -> None:
        self.held -= self._sizes.pop(stream, 0)

    def _start(self, frame: fp.Frame) -> None:
        stream = frame.stream  # the callback must not keep the payload alive
        task = asyncio.get_running_loop().create_task(self._serve(stream, frame.payload))
        self.tasks[stream] = task
        task.add_done_callback(lambda _: self._done(stream))

    def _done(self, stream: int) -> None:
        del self.tasks[stream]
        self._release(stream)
        self.served += 1
        while self._waiting and len(self.tasks) < MAX_CONCURRENT_STREAMS:
            self._start(self._waiting.pop(next(iter(self._waiting))))
        transport = self._transport
        full = self._waiting or self.held >= self.budget
        if self._paused and not full and transport is not None:
            self._paused = False
            if not transport.is_closing():
                transport.resume_reading()

    async def _serve(self, stream: int, payload: bytes) -> None:
        try:
            timeout_ms, body = fp.split_request(payload)
            del payload
            request = codec.decode_request(body)
        except fp.ProtocolViolation as err:
            self._violation(fp.ProtocolViolation(f"bad REQUEST on stream {stream!r}: {err}"))
            return
        except GRPCError as err:  # a verb daprd refuses: the stream fails, not the connection
            self._write(fp.error_frame(stream, err.status.value, err.message or ""))
            return
        del body
        # The caller's deadline (+ grace) as one timer that cancels this task, not an
        # asyncio.timeout (a context, a reschedule and an uncancel per call).
        timer = None
        if timeout_ms:
            loop = asyncio.get_running_loop()
            when = loop.time() + timeout_ms / 1000 + DEADLINE_GRACE_S
            timer = loop.call_at(when, self._expire, stream)
        try:
            if self._peer is None:
                raise GRPCError(Status.UNAUTHENTICATED, NO_CLIENT_ID)
            response = await self._handle(self._peer, request)
            out, body = codec.encode_response(response)
            head = fp.header(fp.RESPONSE, stream, len(out) + len(body))
            frame: tuple[bytes, ...] = (head, out, body)
        except asyncio.CancelledError:
            if stream not in self._expired:
                raise  # CANCEL from the caller, or the connection is gone
            task = self.tasks.get(stream)
            if task is not None:
                task.uncancel()
            log.info("Deadline exceeded")
            frame = (fp.error_frame(stream, Status.DEADLINE_EXCEEDED.value, ""),)
        except GRPCError as err:
            frame = (fp.error_frame(stream, err.status.value, err.message or ""),)
        except TimeoutError:  # the app call's own timeout, not the caller's deadline: as grpclib
            log.exception("Timeout occurred")
            frame = (fp.error_frame(stream, Status.UNKNOWN.value, "Internal Server Error"),)
        except Exception:
            log.exception("Application error")
            frame = (fp.error_frame(stream, Status.UNKNOWN.value, "Internal Server Error"),)
        finally:
            if timer is not None:
                timer.cancel()
                self._expired.discard(stream)
        if not self._writable.is_set():
            await self._writable.wait()
        self._write(*frame)

    def _expire(self, stream: int) -> None:
        task = self.tasks.get(stream)
        if task is not None and not task.done():
            self._expired.add(stream)
            task.cancel()

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
        self._sizes.clear()
        self.held = 0
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
