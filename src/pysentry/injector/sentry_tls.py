"""The injector's serving certificate from Sentry, as Dapr's injector gets it (Kubernetes mode).

The injector asks Sentry for the control-plane identity ``dapr-injector`` in its own namespace,
with its projected service-account token and the ``kubernetes`` validator (the Pod carries
``dapr.io/control-plane: injector``); Sentry adds the DNS name
``dapr-sidecar-injector.<namespace>.svc``, which is the name the API server checks when it calls
the webhook through its Service. Everything TLS comes from :mod:`pysentry.security`, the code
daprd uses: :class:`SentryClient` (Dapr's retries), :class:`SecurityProvider` (renewal at 50%
of the lifetime) and :class:`RotatingServerContext` (a new certificate for new handshakes, the
listener and open connections untouched).

At start the trust anchors file (the mounted ``dapr-trust-bundle`` ConfigMap) and a first
certificate are retried until both are there (``Sentry down at start``): each failure is logged
with its cause and the next try, and the webhook's port stays closed meanwhile. When the anchors
file changes (a root rotation), the certificate is renewed at once, so that it chains to the
anchors the webhook's ``caBundle`` is about to hold.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from pysentry.errors import ConfigError, InvalidBundle, SentryUnavailable
from pysentry.security.anchors import FileAnchors
from pysentry.security.identity import X509Svid
from pysentry.security.provider import SecurityProvider
from pysentry.security.rotation import RotatingServerContext
from pysentry.security.sentry_client import SentryClient
from pysentry.security.sentry_failure import SentryRequestFailed
from pysentry.security.sentry_sign import TokenValidator
from pysentry.sidecar.kubernetes import LEGACY_TOKEN_PATH, SENTRY_TOKEN_PATH

log = logging.getLogger("pysentry.injector")

APP_ID = "dapr-injector"
ANCHORS_FILE_ENV = "DAPR_TRUST_ANCHORS_FILE"
DEFAULT_ANCHORS_FILE = Path("/var/run/secrets/dapr.io/tls/ca.crt")  # where the chart mounts it
TOKEN_FILE_ENV = "DAPR_SENTRY_TOKEN_FILE"
FIRST_RETRY_S, MAX_RETRY_S = 0.5, 5.0
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SentrySettings:
    address: str
    namespace: str
    trust_domain: str
    anchors_file: Path
    token_file: Path | None = None  # None: the projected token, else the legacy one

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], *, address: str, namespace: str, trust_domain: str
    ) -> SentrySettings:
        token = env.get(TOKEN_FILE_ENV)
        return cls(
            address=address,
            namespace=namespace,
            trust_domain=trust_domain,
            anchors_file=Path(env.get(ANCHORS_FILE_ENV) or DEFAULT_ANCHORS_FILE),
            token_file=Path(token) if token else None,
        )


def read_token(settings: SentrySettings) -> str:
    """The service-account token, re-read for every request (the kubelet rotates it)."""
    path = settings.token_file
    if path is None:
        path = SENTRY_TOKEN_PATH if SENTRY_TOKEN_PATH.exists() else LEGACY_TOKEN_PATH
    try:
        token = path.read_text().strip()
    except OSError as err:
        raise SentryRequestFailed(
            f"cannot read the Sentry token {str(path)!r}: {err.strerror}; mount the projected "
            f"token volume 'dapr-identity-token' (the chart does) or set {TOKEN_FILE_ENV}",
            reason="sentry_token",
        ) from err
    if not token:
        raise SentryRequestFailed(f"token file {str(path)!r} is empty", reason="sentry_token")
    return token


class SentryIdentity:
    """The serving certificate: fetched, renewed, and renewed again when the anchors change."""

    def __init__(self, settings: SentrySettings, anchors: FileAnchors) -> None:
        self.settings = settings
        self.anchors = anchors
        try:
            self.client = SentryClient(
                settings.address,
                anchors,
                control_plane_trust_domain=settings.trust_domain,
                control_plane_namespace=settings.namespace,
            )
        except SentryRequestFailed as err:
            raise ConfigError(f"injector: SENTRY_ADDRESS: {err}") from err
        self.provider = SecurityProvider(self._request, app_id=APP_ID)
        self.server: RotatingServerContext | None = None

    async def _request(self, csr_pem: bytes) -> tuple[x509.Certificate, ...]:
        token = await asyncio.to_thread(read_token, self.settings)
        return await self.client.sign(
            csr_pem,
            app_id=APP_ID,
            namespace=self.settings.namespace,
            token=token,
            validator=TokenValidator.KUBERNETES,
            trust_domain=self.settings.trust_domain,
        )

    async def start(self) -> X509Svid:
        svid = await self.provider.start()
        # TLS only (the API server presents no client certificate), HTTP/1.1 (no ALPN h2)
        self.server = RotatingServerContext(svid, None, require_client_cert=False, alpn=())
        self.provider.subscribe(self.server.set_identity)
        log.info(
            "Serving certificate from Sentry: %s, expires %s",
            svid.spiffe_id,
            svid.not_after.isoformat(),
        )
        return svid

    async def renew_now(self) -> None:
        """After an anchors change: a certificate from the new issuer before the caBundle moves."""
        try:
            await self.provider.renew()
        except Exception as err:  # the old certificate stays; the renewal loop keeps trying
            log.error("Renewing the serving certificate after a trust anchors change: %s", err)

    async def run(self) -> None:
        await self.provider.run()


async def obtain_identity(
    settings: SentrySettings,
    *,
    sleep: Sleep = asyncio.sleep,
    first_retry_s: float = FIRST_RETRY_S,
    max_retry_s: float = MAX_RETRY_S,
) -> SentryIdentity:
    """Trust anchors and a first certificate, retried (doubling, capped) until both are had."""
    delay = first_retry_s
    while True:
        try:
            anchors = FileAnchors(settings.anchors_file)
        except (ConfigError, InvalidBundle) as err:
            why = f"no trust anchors yet: {err} (Sentry fills the ConfigMap dapr-trust-bundle)"
        else:
            identity = SentryIdentity(settings, anchors)
            try:
                await identity.start()
                return identity
            except SentryUnavailable as err:
                why = f"{err}"
        log.error(
            "Cannot get the webhook's serving certificate from Sentry at %r, trying again in "
            "%gs: %s",
            settings.address,
            delay,
            why,
        )
        await sleep(delay)
        delay = min(delay * 2, max_retry_s)
