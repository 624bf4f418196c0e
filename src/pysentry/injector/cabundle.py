"""Keep the webhook's ``caBundle`` equal to the CA that signed the injector's serving certificate.

Dapr's injector patches ``MutatingWebhookConfiguration dapr-sidecar-injector`` at start with the
trust anchors, and again whenever they change (its ClusterRole grants exactly ``patch`` on that
name). pysentry does the same: with the trust anchors file when the certificate comes from Sentry,
or with the PEM of ``--webhook-ca-file`` when it is served from files. A strategic-merge patch
keyed by the webhook's name needs no ``get``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable

from pysentry.errors import ConfigError
from pysentry.kube.client import KubeClient, KubeError
from pysentry.security.anchors import FileAnchors

log = logging.getLogger("pysentry.injector")
WEBHOOK_CONFIG = "dapr-sidecar-injector"
WEBHOOK_NAME = "sidecar-injector.dapr.io"
PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"
STRATEGIC = "application/strategic-merge-patch+json"


async def patch_ca_bundle(kube: KubeClient, ca_pem: bytes, config: str = WEBHOOK_CONFIG) -> None:
    body = {
        "webhooks": [
            {"name": WEBHOOK_NAME, "clientConfig": {"caBundle": base64.b64encode(ca_pem).decode()}}
        ]
    }
    try:
        await kube.patch(PATH + config, body, content_type=STRATEGIC)
    except KubeError as err:
        raise ConfigError(
            f"cannot set the caBundle of MutatingWebhookConfiguration {config!r}: {err}; the "
            "injector's ServiceAccount needs `patch` on it (the chart's ClusterRole "
            "'dapr-injector' grants it)"
        ) from err
    log.info("Patched the caBundle of MutatingWebhookConfiguration %r", config)


class CaBundleKeeper:
    """Patch now, then after every change of ``anchors`` (run :meth:`run` in a task, which also
    watches the file). ``before_patch`` runs first on each change (the Sentry mode renews its
    certificate there, so the new caBundle never lacks the issuer of the one being served)."""

    def __init__(
        self,
        kube: KubeClient,
        anchors: FileAnchors,
        *,
        config: str = WEBHOOK_CONFIG,
        before_patch: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.kube = kube
        self.anchors = anchors
        self.config = config
        self._before = before_patch
        self._changed = asyncio.Event()
        self.anchors.subscribe(lambda _: self._changed.set())

    async def start(self) -> None:
        await patch_ca_bundle(self.kube, self.anchors.pem(), self.config)

    async def run(self) -> None:
        watcher = asyncio.create_task(self.anchors.run())
        try:
            while True:
                await self._changed.wait()
                self._changed.clear()
                if self._before is not None:
                    await self._before()
                try:
                    await patch_ca_bundle(self.kube, self.anchors.pem(), self.config)
                except ConfigError as err:  # keep serving; the next change retries
                    log.error("%s", err)
        finally:
            watcher.cancel()
