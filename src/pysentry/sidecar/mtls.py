"""mTLS wiring for the sidecar, on top of ``pysentry.security`` (no TLS code of its own).

* :func:`channel_factory`: ``SpiffeChannel`` per target; the current client context for each new
  connection; the peer must be ``/ns/<ns>/<app-id>`` in any trust domain (spec §9.6).
* :func:`internal_server`: a ``SpiffeServer`` (client SVID must chain to the anchors, checked per
  connection) whose handler reads each stream's verified caller ID; with the fast path on, a
  ``FastpathServer`` that also serves ``pysentry-invoke/1`` to peers that agree on it by ALPN.
* :func:`fastpath_dialer`: how the caller opens ``pysentry-invoke/1`` connections (the current
  client SVID for each, ALPN ``pysentry-invoke/1`` then ``h2``).
* :class:`SidecarSecurity`: identity from Sentry (initial fetch + renewal), anchors, contexts.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from pysentry.clock import Clock, system_clock
from pysentry.pki.svid import authorize_path
from pysentry.security.anchors import FileAnchors, TrustAnchors
from pysentry.security.identity import X509Svid
from pysentry.security.provider import SecurityProvider
from pysentry.security.rotation import ClientContexts, RotatingServerContext
from pysentry.sidecar.first_identity import identity_provider
from pysentry.sidecar.first_identity import load_anchors as load_anchors  # public here too
from pysentry.sidecar.first_identity import sentry_token as sentry_token
from pysentry.spiffe import dapr_path

if TYPE_CHECKING:  # daprd builds its first identity before it imports the servers and config
    from grpclib.client import Channel

    from pysentry.config.configuration import Configuration
    from pysentry.security.channel import SpiffeServer
    from pysentry.security.events import SecurityEvents
    from pysentry.sidecar.fastpath_client import FastpathDialer
    from pysentry.sidecar.internal_client import ChannelFactory
    from pysentry.sidecar.internal_server import ServiceInvocation
    from pysentry.sidecar.invocation import Target
    from pysentry.sidecar.options import Options

log = logging.getLogger(__name__)


def channel_factory(
    contexts: ClientContexts, anchors: TrustAnchors, *, clock: Clock = system_clock
) -> ChannelFactory:
    from pysentry.security.channel import SpiffeChannel  # grpclib: after the first identity

    def make(host: str, port: int, target: Target) -> Channel:
        return SpiffeChannel(
            host,
            port,
            context=contexts.get,
            anchors=anchors,
            authorizer=authorize_path(dapr_path(target.namespace, target.app_id)),
            clock=clock,
        )

    return make


def internal_server(
    service: ServiceInvocation,
    anchors: TrustAnchors,
    *,
    clock: Clock = system_clock,
    fastpath_max_payload: int | None = None,
) -> SpiffeServer:
    """The internal server; ``fastpath_max_payload`` (the frame limit) turns the fast path on
    (the listener context must offer its ALPN id too: ``Identity(..., fastpath=True)``)."""
    from pysentry.security.channel import SpiffeServer

    server: SpiffeServer
    if fastpath_max_payload is None:
        server = SpiffeServer([service], anchors=anchors, clock=clock)
    else:
        from pysentry.sidecar.fastpath_server import FastpathServer

        server = FastpathServer(
            [service],
            handle=service.handle,
            anchors=anchors,
            max_payload=fastpath_max_payload,
            clock=clock,
        )
    service.set_identifier(server.peer_id)
    return server


def fastpath_dialer(
    identity: Identity, max_payload: int, *, clock: Clock = system_clock
) -> FastpathDialer:
    from pysentry.sidecar.fastpath_client import FastpathDialer

    return FastpathDialer(identity.fast_clients.get, identity.anchors, max_payload, clock)


class Identity:
    """The current SVID plus the TLS contexts built from it; follows rotations and reloads.

    ``fastpath``: the listener offers ``pysentry-invoke/1`` before ``h2``."""

    def __init__(self, svid: X509Svid, anchors: TrustAnchors, *, fastpath: bool = False) -> None:
        from pysentry.sidecar.fastpath_protocol import FASTPATH_ALPN, GRPC_ALPN

        self._svid = svid
        self.anchors = anchors
        alpn = FASTPATH_ALPN if fastpath else GRPC_ALPN
        self.server = RotatingServerContext(svid, anchors, alpn=alpn)
        self.clients = ClientContexts(self.current, anchors)
        self.fast_clients = ClientContexts(self.current, anchors, alpn=FASTPATH_ALPN)
        self._listeners: list[Callable[[], None]] = []
        anchors.subscribe(lambda new: self.server.set_anchors(new))

    def current(self) -> X509Svid:
        return self._svid

    def rotate(self, svid: X509Svid) -> None:
        self._svid = svid
        self.server.set_identity(svid)
        for listener in self._listeners:
            listener()

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def info(self) -> tuple[str, datetime] | None:
        return str(self._svid.spiffe_id), self._svid.not_after


class SidecarSecurity:
    """The sidecar's identity from Sentry, its anchors, and what the servers and clients need."""

    def __init__(
        self, provider: SecurityProvider, anchors: TrustAnchors, identity: Identity
    ) -> None:
        self.provider = provider
        self.anchors = anchors
        self.identity = identity
        provider.subscribe(identity.rotate)

    @property
    def server_context(self) -> ssl.SSLContext:
        return self.identity.server.listener

    def channel_factory(self) -> ChannelFactory:
        return channel_factory(self.identity.clients, self.anchors)

    def fastpath_dialer(self, max_payload: int) -> FastpathDialer:
        return fastpath_dialer(self.identity, max_payload)

    def identity_info(self) -> tuple[str, datetime] | None:
        return self.identity.info()

    def subscribe(self, listener: Callable[[], None]) -> None:
        self.identity.subscribe(listener)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.provider.run())
            if isinstance(self.anchors, FileAnchors):
                tg.create_task(self.anchors.run())

    @classmethod
    async def start(
        cls, opts: Options, cfg: Configuration | None, metrics: SecurityEvents
    ) -> SidecarSecurity:
        """``cfg`` None: ``--sentry-address`` is given, the Configuration is not needed."""
        anchors, provider, _ = identity_provider(opts, cfg, metrics)
        svid = await provider.start()
        return cls(provider, anchors, Identity(svid, anchors, fastpath=opts.fastpath))
