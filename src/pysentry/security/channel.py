"""grpclib over SPIFFE TLS: the peer's SPIFFE ID is checked per connection, after the handshake.

- :class:`SpiffeChannel` (client): authorizes the server's ID before any request is sent, so a
  token never reaches the wrong server. The accepted ID is in :attr:`SpiffeChannel.peer_id`.
- :class:`SpiffeServer` (server): applies the SVID rules and the authorizer to each client
  certificate when the connection opens and closes it on a mismatch; handlers read the caller's
  verified ID with :meth:`SpiffeServer.peer_id` (``None`` for plaintext or TLS-only servers).

Both hook grpclib's connection factory (``Channel._create_connection``,
``Server._protocol_factory``), which is stable across grpclib 0.4.x (pinned in constraints.txt).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import weakref
from collections.abc import Callable, Collection
from typing import Any

from grpclib.client import Channel
from grpclib.protocol import H2Protocol
from grpclib.server import Server, Stream

from pysentry.clock import Clock, system_clock
from pysentry.errors import PeerRejected
from pysentry.pki.svid import Authorizer
from pysentry.security.tls import AnchorsLike, peer_spiffe_id
from pysentry.spiffe import SpiffeId

log = logging.getLogger(__name__)

ContextFactory = Callable[[], ssl.SSLContext]


class SpiffeChannel(Channel):
    """A grpclib ``Channel`` over TLS that authorizes the server's SPIFFE ID on connect.

    ``context`` is an ``SSLContext`` or a zero-argument callable returning the current one
    (e.g. :meth:`pysentry.security.rotation.ClientContexts.get`), asked on each new connection.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        context: ssl.SSLContext | ContextFactory,
        anchors: AnchorsLike,
        authorizer: Authorizer | None,
        clock: Clock = system_clock,
        **kwargs: Any,
    ) -> None:
        first = context if isinstance(context, ssl.SSLContext) else context()
        super().__init__(host, port, ssl=first, **kwargs)
        self._context_factory = None if isinstance(context, ssl.SSLContext) else context
        self._anchors = anchors
        self._authorizer = authorizer
        self._clock = clock
        self.peer_id: SpiffeId | None = None

    async def _create_connection(self) -> H2Protocol:
        if self._context_factory is not None:
            self._ssl = self._context_factory()
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_connection(
            self._protocol_factory, self._host, self._port, ssl=self._ssl
        )
        ssl_object = transport.get_extra_info("ssl_object")
        try:
            if ssl_object is None:
                raise PeerRejected("connection is not TLS: cannot verify the peer")
            self.peer_id = peer_spiffe_id(
                ssl_object, self._anchors, self._authorizer, self._clock()
            )
        except BaseException:
            transport.abort()
            raise
        return protocol


class _CheckedProtocol(H2Protocol):
    def __init__(self, *args: Any, check: Callable[[asyncio.BaseTransport], bool]) -> None:
        super().__init__(*args)
        self._check = check
        self._rejected = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._check(transport):
            self._rejected = True
            transport.abort()  # type: ignore[attr-defined]
            return
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self._rejected:
            super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._rejected:
            super().connection_lost(exc)


class SpiffeServer(Server):
    """A grpclib ``Server`` that checks each TLS client's SVID when the connection opens.

    Start it with ``await server.start(host, port, ssl=context)`` where ``context`` requires a
    client certificate (``server_context(...)`` or ``RotatingServerContext.listener``).
    """

    def __init__(
        self,
        handlers: Collection[Any],
        *,
        anchors: AnchorsLike,
        authorizer: Authorizer | None = None,
        clock: Clock = system_clock,
        **kwargs: Any,
    ) -> None:
        super().__init__(handlers, **kwargs)
        self._anchors = anchors
        self._authorizer = authorizer
        self._clock = clock
        self._peers: weakref.WeakKeyDictionary[object, SpiffeId] = weakref.WeakKeyDictionary()

    def _check(self, transport: asyncio.BaseTransport) -> bool:
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return True  # plaintext server: nothing to check
        if ssl_object.getpeercert(binary_form=True) is None:
            return True  # TLS-only server: the client sent no certificate
        try:
            peer = peer_spiffe_id(ssl_object, self._anchors, self._authorizer, self._clock())
        except PeerRejected as err:
            log.debug("Rejected connection from %s: %s", transport.get_extra_info("peername"), err)
            return False
        self._peers[ssl_object] = peer
        return True

    def _protocol_factory(self) -> H2Protocol:
        plain = super()._protocol_factory()  # registers grpclib's per-connection handler
        return _CheckedProtocol(plain.handler, plain.config, plain.h2_config, check=self._check)

    def peer_id(self, stream: Stream[Any, Any]) -> SpiffeId | None:
        """The verified SPIFFE ID of the client of ``stream`` (``None`` without a client cert)."""
        transport = getattr(stream.peer, "_transport", None)
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        return self._peers.get(ssl_object) if ssl_object is not None else None
