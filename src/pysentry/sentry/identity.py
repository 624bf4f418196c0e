"""Sentry's own serving SVID, ``spiffe://<td>/ns/<NAMESPACE>/dapr-sentry`` (spec §6, end).

As in Dapr, Sentry runs the same security provider as every workload
(:class:`pysentry.security.provider.SecurityProvider`: new key and CSR per issue, renewal at 50%
of the lifetime, retry every 10 s keeping the old SVID), with a requester that signs in-process
with the current CA bundle. The gRPC listener is created once with ``listener_context`` (a
:class:`pysentry.security.rotation.RotatingServerContext`, TLS only, no client certificate request):
new handshakes get the current SVID, established connections keep theirs.
"""

from __future__ import annotations

import logging
import ssl

from cryptography import x509

from pysentry.clock import Clock, system_clock
from pysentry.errors import InvalidCsr
from pysentry.pki.csr import parse_csr
from pysentry.pki.keys import KeyAlgorithm
from pysentry.pki.pem import load_certificates
from pysentry.pki.profiles import SENTRY_APP_ID
from pysentry.security.identity import X509Svid
from pysentry.security.provider import SecurityProvider
from pysentry.security.rotation import RotatingServerContext
from pysentry.sentry.ca import CertificateAuthority
from pysentry.sentry.monitoring import SentryMetrics
from pysentry.spiffe import SpiffeId

log = logging.getLogger(__name__)


class ServingIdentity:
    """Sentry's SVID source and the rotating TLS context of its gRPC listener."""

    def __init__(
        self,
        ca: CertificateAuthority,
        *,
        key_algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256,
        metrics: SentryMetrics | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self._ca = ca
        self._metrics = metrics
        self.provider = SecurityProvider(
            self._request,
            app_id=SENTRY_APP_ID,
            key_algorithm=key_algorithm,
            clock=clock,
            on_rotate=self._rotated,
        )
        self._rotating: RotatingServerContext | None = None

    @property
    def spiffe_id(self) -> SpiffeId:
        return self._ca.settings.sentry_id

    async def _request(self, csr_pem: bytes) -> tuple[x509.Certificate, ...]:
        """The in-process CertRequester: parse the CSR and sign with the current bundle."""
        try:
            public_key = parse_csr(csr_pem)
            signed = self._ca.sign_identity(public_key, self.spiffe_id)
        except Exception as err:
            reason = "invalid_csr" if isinstance(err, InvalidCsr) else "ca_error"
            log.error("Failed to issue the serving certificate (%s): %s", reason, err)
            if self._metrics is not None:
                self._metrics.servercert_failed.inc()
            raise
        return load_certificates(signed.chain_pem)

    def _rotated(self, svid: X509Svid) -> None:
        if self._rotating is not None:
            self._rotating.set_identity(svid)
        log.info(
            "Serving certificate rotated: id=%s serial=%s not_after=%s",
            svid.spiffe_id,
            svid.serial,
            svid.not_after.isoformat(),
        )

    async def start(self) -> X509Svid:
        """Issue the first SVID and build the listener context."""
        svid = await self.provider.start()
        self._rotating = RotatingServerContext(svid, None, require_client_cert=False)
        # Sidecars open a new connection per request and never resume a session: skip the two
        # TLS 1.3 session tickets OpenSSL would otherwise make and send after every handshake.
        self._rotating.listener.num_tickets = 0
        log.info(
            "Serving certificate issued: id=%s serial=%s not_after=%s",
            svid.spiffe_id,
            svid.serial,
            svid.not_after.isoformat(),
        )
        return svid

    def current(self) -> X509Svid:
        return self.provider.current()

    @property
    def listener_context(self) -> ssl.SSLContext:
        """Create the listener with this, once; handshakes switch to the current identity."""
        if self._rotating is None:
            raise RuntimeError("serving identity not issued yet: await start() first")
        return self._rotating.listener

    async def reissue(self) -> None:
        """After a bundle swap: a new SVID from the new bundle, now."""
        await self.provider.renew()

    async def run(self) -> None:
        """Renew at 50% of the lifetime until cancelled."""
        await self.provider.run()
