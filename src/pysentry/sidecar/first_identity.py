"""daprd's Sentry requests and its first identity, which needs neither asyncio nor the servers.

With ``--enable-mtls`` and ``--sentry-address`` (standalone), ``main()`` requests the first
certificate on the main thread with a blocking call (:meth:`SecurityProvider.start_blocking`,
:meth:`SentryClient.sign_blocking`) before it imports asyncio, uvloop and the rest (issue 13):
the same request, retries, checks, log lines, metrics and errors as the asyncio request, which
stays in use for renewals and for the other start-ups (Kubernetes mode, the Sentry address from
the Configuration). Nothing here imports asyncio until a renewal reads a token file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from cryptography import x509

from pysentry.errors import ConfigError
from pysentry.security.anchors import FileAnchors, StaticAnchors, TrustAnchors
from pysentry.security.provider import SecurityProvider
from pysentry.security.sentry_client import SentryClient
from pysentry.security.sentry_failure import SentryRequestFailed
from pysentry.security.sentry_sign import TokenValidator, request_trust_domain

if TYPE_CHECKING:
    from pysentry.config.configuration import Configuration
    from pysentry.security.events import SecurityEvents
    from pysentry.sidecar.options import Options

log = logging.getLogger("pysentry.sidecar.mtls")


def load_anchors(opts: Options) -> TrustAnchors:
    """``--trust-anchors-file`` (watched) or ``DAPR_TRUST_ANCHORS``; a clear error if neither."""
    if opts.trust_anchors_file is not None:
        if opts.trust_anchors_pem is not None and opts.mode == "kubernetes":
            # the injector sets both: the env for tools that read the Pod spec, the file to reload
            log.info(
                "Trust anchors from %s (watched); DAPR_TRUST_ANCHORS not used",
                opts.trust_anchors_file,
            )
        elif opts.trust_anchors_pem is not None:
            log.warning("Both --trust-anchors-file and DAPR_TRUST_ANCHORS are set; using the file")
        return FileAnchors(opts.trust_anchors_file)
    if opts.trust_anchors_pem is not None:
        return StaticAnchors.from_pem(opts.trust_anchors_pem)
    raise ConfigError(
        "trust anchors are required when mTLS is enabled: set DAPR_TRUST_ANCHORS to the PEM of "
        'the CA certificate (e.g. export DAPR_TRUST_ANCHORS="$(cat ~/.dapr/certs/ca.crt)") '
        "or pass --trust-anchors-file <path to ca.crt>"
    )


def sentry_token(opts: Options) -> tuple[str, TokenValidator]:
    """The token and validator for each request (the token file is re-read every time)."""
    if opts.sentry_token_file is None:
        return "", TokenValidator.UNKNOWN
    try:
        token = opts.sentry_token_file.read_text().strip()
    except OSError as err:
        raise SentryRequestFailed(
            f"failed to read token at path {str(opts.sentry_token_file)!r}: {err.strerror}",
            reason="sentry_token",
        ) from err
    if not token:
        raise SentryRequestFailed(
            f"token file {str(opts.sentry_token_file)!r} is empty", reason="sentry_token"
        )
    kind = TokenValidator.KUBERNETES if opts.mode == "kubernetes" else TokenValidator.JWKS
    return token, kind


class SentryRequests:
    """daprd's ``SignCertificate`` requests: :meth:`request` (asyncio: renewals, and the first
    identity where it is fetched on the loop) and :meth:`request_blocking` (the first identity,
    before the loop exists). Both send the same fields and re-read the token file each time."""

    def __init__(
        self,
        opts: Options,
        cfg: Configuration | None,
        anchors: TrustAnchors,
        *,
        blocking_sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``cfg`` None: ``--sentry-address`` is given, the Configuration is not needed.
        ``blocking_sleep``: the pause between the attempts of :meth:`request_blocking`."""
        address = opts.sentry_address or (cfg.spec.mtls.sentry_address if cfg else "") or ""
        if not address:
            raise ConfigError(
                "--sentry-address: required when mTLS is enabled (e.g. localhost:50001)"
            )
        self.opts = opts
        self.client = SentryClient(
            address,
            anchors,
            control_plane_trust_domain=(
                opts.control_plane_trust_domain if opts.control_plane_trust_domain_given else None
            ),
            control_plane_namespace=opts.control_plane_namespace,
            blocking_sleep=blocking_sleep,
        )
        self.sentry_id = opts.sentry_local_identity or opts.app_id
        self.trust_domain = request_trust_domain(
            self.sentry_id,
            opts.namespace,
            opts.control_plane_namespace,
            opts.control_plane_trust_domain,
        )

    async def request(self, csr_pem: bytes) -> tuple[x509.Certificate, ...]:
        # The token file is re-read on each request (renewals included): off the loop.
        # Without one there is nothing to read (and no thread to start before the first SVID).
        if self.opts.sentry_token_file is None:
            token, validator = sentry_token(self.opts)
        else:
            import asyncio

            token, validator = await asyncio.to_thread(sentry_token, self.opts)
        return await self.client.sign(
            csr_pem,
            app_id=self.sentry_id,
            namespace=self.opts.namespace,
            token=token,
            validator=validator,
            trust_domain=self.trust_domain,
        )

    def request_blocking(self, csr_pem: bytes) -> tuple[x509.Certificate, ...]:
        token, validator = sentry_token(self.opts)
        return self.client.sign_blocking(
            csr_pem,
            app_id=self.sentry_id,
            namespace=self.opts.namespace,
            token=token,
            validator=validator,
            trust_domain=self.trust_domain,
        )


def identity_provider(
    opts: Options,
    cfg: Configuration | None,
    metrics: SecurityEvents,
    *,
    blocking_sleep: Callable[[float], None] = time.sleep,
) -> tuple[TrustAnchors, SecurityProvider, SentryRequests]:
    """The anchors, and a provider (not started) that renews with the asyncio requests."""
    anchors = load_anchors(opts)
    requests = SentryRequests(opts, cfg, anchors, blocking_sleep=blocking_sleep)
    provider = SecurityProvider(requests.request, app_id=opts.app_id, metrics=metrics)
    return anchors, provider, requests
