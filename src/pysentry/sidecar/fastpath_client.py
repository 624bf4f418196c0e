"""The caller's side of ``pysentry-invoke/2`` (:mod:`.fastpath_protocol`), with gRPC fallback.

:class:`FastpathInvoker` keeps one TLS connection per (address, target) and runs every call to
that peer on it, concurrently. A new connection (:mod:`.fastpath_connection`) offers ALPN
``pysentry-invoke/2`` then ``h2`` with the *current* client SVID (rotation reaches new
connections) and checks the peer's SPIFFE ID before any byte is sent. A peer that picks ``h2`` (a Go
daprd, or a pysentry with the fast path off) gets gRPC from then on, starting on that very
connection (handed to the gRPC invoker), until a connection-level failure makes us ask again.
``max_connection_age`` recycles fast connections as it does gRPC channels: new calls dial anew,
the old connection closes when its last call ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import timedelta

from grpclib.exceptions import StreamTerminatedError

from pysentry.sidecar import fastpath_codec as codec
from pysentry.sidecar import fastpath_protocol as fp
from pysentry.sidecar.fastpath_connection import LOST, ClientConnection, Declined, FastpathDialer
from pysentry.sidecar.invocation import InvokeRequest, InvokeResponse, Target
from pysentry.sidecar.invoker import AdoptingInvoker, split_address

__all__ = ["ClientConnection", "FastpathDialer", "FastpathInvoker"]

log = logging.getLogger(__name__)

_DEADLINE = "Deadline exceeded"  # grpclib's TimeoutError text


def _retrieve(future: asyncio.Future[ClientConnection | None]) -> None:
    if not future.cancelled():
        future.exception()


class FastpathInvoker:
    """A :class:`~.invoker.RemoteInvoker`: ``pysentry-invoke/2`` where the peer agrees, else
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
            conn = self._conns.get(key)
            if conn is None or not self._fresh(conn):
                async with asyncio.timeout_at(deadline):
                    conn = await self._connection(key)
            if conn is None:
                return await self._fallback.call(address, target, request)
            message, body = codec.encode_request(request)
            reply = await conn.call(message, deadline, body)
        except TimeoutError as err:
            raise TimeoutError(_DEADLINE) from err  # grpclib's text, for the same answer
        try:
            return codec.decode_response(reply)
        except fp.ProtocolViolation as err:
            conn.close()  # a peer that sends what it may not: as on any bad frame
            raise StreamTerminatedError(LOST) from err

    def _fresh(self, conn: ClientConnection) -> bool:
        """New calls may use ``conn``: open, not retired, younger than ``max_connection_age``."""
        if not conn.usable:
            return False
        return self._max_age is None or self._clock() - conn.created <= self._max_age

    async def _connection(self, key: tuple[str, Target]) -> ClientConnection | None:
        conn = self._conns.get(key)
        if conn is not None:
            if self._fresh(conn):
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
