"""Rotation of TLS contexts: never mutate a live one, build a fresh one per change.

:class:`RotatingServerContext` builds the listener context once; its ``sni_callback`` (called for
every ClientHello, with or without SNI) moves the connection to the context of the current
identity and anchors, built fresh on each change. :class:`ClientContexts` hands clients the
context for the current identity, one per change. The contexts themselves are :mod:`.tls`'s.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Sequence

from cryptography import x509

from pysentry.clock import Clock, system_clock
from pysentry.security.anchors import Anchors, TrustAnchors
from pysentry.security.identity import X509Svid
from pysentry.security.tls import (
    ALPN_PROTOCOLS,
    AnchorsLike,
    anchor_certs,
    client_context,
    server_context,
    verified_issuers,
)

_KEEP_PAST_CHAINS = 4


class RotatingServerContext:
    """One listener context whose connections use the current identity's context.

    ``listener`` goes to ``create_server``/``grpclib.Server.start(ssl=...)``. Call
    :meth:`update` (or pass :meth:`set_identity`/:meth:`set_anchors` as subscriber callbacks):
    new handshakes get the new certificate and anchors; established connections keep theirs.
    """

    def __init__(
        self,
        svid: X509Svid,
        anchors: AnchorsLike | None,
        *,
        require_client_cert: bool = True,
        alpn: Sequence[str] = ALPN_PROTOCOLS,
        clock: Clock = system_clock,
    ) -> None:
        self._svid = svid
        self._anchors = anchor_certs(anchors) if anchors is not None else None
        self._require = require_client_cert
        self._alpn = tuple(alpn)
        self._clock = clock
        # The CA chains of the identities this server held: peers that renewed earlier or later
        # may still carry a previous issuer (kept only while it verifies against the anchors).
        self._past_chains: list[tuple[x509.Certificate, ...]] = []
        self.generation = 0
        self._current = self._build()
        self.listener = self._build()
        self.listener.sni_callback = self._on_client_hello

    def _build(self) -> ssl.SSLContext:
        now = self._clock()
        issuers: tuple[x509.Certificate, ...] = ()
        if self._require and self._anchors:
            issuers = verified_issuers(self._past_chains, self._anchors, now)
        return server_context(
            self._svid,
            self._anchors,
            require_client_cert=self._require,
            alpn=self._alpn,
            issuers=issuers,
            now=now,
        )

    def _on_client_hello(
        self, ssl_obj: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        ssl_obj.context = self._current

    @property
    def svid(self) -> X509Svid:
        return self._svid

    @property
    def current(self) -> ssl.SSLContext:
        return self._current

    def update(self, *, svid: X509Svid | None = None, anchors: AnchorsLike | None = None) -> None:
        """Build a fresh context for the new identity and/or anchors and switch to it."""
        if svid is not None:
            chain = self._svid.chain
            if chain not in self._past_chains:
                self._past_chains = [*self._past_chains[-(_KEEP_PAST_CHAINS - 1) :], chain]
            self._svid = svid
        if anchors is not None:
            self._anchors = anchor_certs(anchors)
        self._current = self._build()
        self.generation += 1

    def set_identity(self, svid: X509Svid) -> None:
        self.update(svid=svid)

    def set_anchors(self, anchors: Anchors) -> None:
        self.update(anchors=anchors)


class ClientContexts:
    """Client contexts for new connections, rebuilt only when the identity or anchors change.

    For :class:`pysentry.security.channel.SpiffeChannel` only: OpenSSL does not verify the
    server (``verify_after_handshake=True``); the channel does, before any request.
    """

    def __init__(
        self,
        identity: Callable[[], X509Svid | None],
        anchors: TrustAnchors,
        *,
        alpn: Sequence[str] = ALPN_PROTOCOLS,
    ) -> None:
        self._identity = identity
        self._anchors = anchors
        self._alpn = tuple(alpn)
        self._key: tuple[X509Svid | None, Anchors] | None = None
        self._context: ssl.SSLContext | None = None

    def get(self) -> ssl.SSLContext:
        svid, anchors = self._identity(), self._anchors.current()
        key = self._key
        if self._context is None or key is None or key[0] is not svid or key[1] is not anchors:
            self._context = client_context(
                svid, anchors, alpn=self._alpn, verify_after_handshake=True
            )
            self._key = (svid, anchors)
        return self._context
