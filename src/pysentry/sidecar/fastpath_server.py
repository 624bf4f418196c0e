"""The callee's side of ``pysentry-invoke/2`` (:mod:`.fastpath_protocol`), on the gRPC port.

:class:`FastpathServer` is the internal ``SpiffeServer`` with one more ALPN choice. The listener
context (``RotatingServerContext``, which moves each handshake to the current SVID and anchors)
offers ``pysentry-invoke/2`` before ``h2``; after the handshake a connection that agreed on
``pysentry-invoke/2`` goes to a :class:`~.fastpath_callee.ServerConnection`, every other one to
grpclib as before. The client's SVID is checked exactly as for gRPC (``SpiffeServer._check``: the
SVID rules against the anchors alone, the connection closed before any request on a mismatch);
what a fast connection then does with its requests (limits, deadlines, errors) is
:mod:`.fastpath_callee`'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Collection
from typing import Any, cast

from grpclib.protocol import H2Protocol

from pysentry.clock import Clock, system_clock
from pysentry.security.channel import SpiffeServer
from pysentry.security.tls import AnchorsLike
from pysentry.sidecar import fastpath_protocol as fp
from pysentry.sidecar.fastpath_callee import Handle, ServerConnection

log = logging.getLogger(__name__)


class _Negotiated(asyncio.Protocol):
    """Hands a new connection to grpclib or to the fast path, by the ALPN choice. grpclib's
    protocol (and the per-connection handler it registers with the server) is made only for an
    ``h2`` connection: one made for a fast or refused connection would never be freed."""

    def __init__(self, grpc: Callable[[], H2Protocol], server: FastpathServer) -> None:
        self._grpc = grpc
        self._server = server

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, base)  # uvloop's is not a subclass
        ssl_object = transport.get_extra_info("ssl_object")
        chosen: asyncio.Protocol
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == fp.ALPN:
            fast = self._server.accept_fast(transport)
            if fast is None:
                transport.abort()
                return
            chosen = fast
        else:
            self._server.accepted["h2"] += 1
            chosen = self._grpc()
        transport.set_protocol(chosen)
        chosen.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        pass  # refused before a protocol was chosen


class FastpathServer(SpiffeServer):
    """The internal server: gRPC (``h2``) and ``pysentry-invoke/2`` on one mTLS listener."""

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
        #: Request bytes one fast connection may hold before it stops being read.
        self.connection_budget = fp.connection_budget(max_payload)
        self._closing: list[asyncio.Task[None]] = []
        #: Connections accepted, by negotiated protocol (``h2``, ``pysentry-invoke/2``).
        self.accepted: Counter[str] = Counter()

    @property
    def connections(self) -> tuple[ServerConnection, ...]:
        """The open ``pysentry-invoke/2`` connections."""
        return tuple(self._fast)

    def _protocol_factory(self) -> H2Protocol:
        return cast(H2Protocol, _Negotiated(super()._protocol_factory, self))

    def accept_fast(self, transport: asyncio.Transport) -> ServerConnection | None:
        if not self._check(transport):
            return None
        ssl_object = transport.get_extra_info("ssl_object")
        peer = self._peers.get(ssl_object)
        log.debug("Accepted a %s connection from %s", fp.ALPN, peer)
        self.accepted[fp.ALPN] += 1
        conn = ServerConnection(
            self._handle,
            peer,
            max_payload=self._max_payload,
            budget=self.connection_budget,
            on_lost=self._fast.discard,
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
