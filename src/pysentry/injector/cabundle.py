"""Keep the webhook's ``caBundle`` equal to the CA that signed the injector's serving certificate.

Dapr's injector patches ``MutatingWebhookConfiguration dapr-sidecar-injector`` at start (its
ClusterRole grants exactly ``patch`` on that name). pysentry does the same with the PEM of
``--webhook-ca-file``, and again whenever that file changes (a new CA is picked up without a
restart). A strategic-merge patch keyed by the webhook's name needs no ``get``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from pathlib import Path

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
    """Patch now, then after every change of ``path`` (run :meth:`run` in a task)."""

    def __init__(self, kube: KubeClient, path: Path) -> None:
        self.kube = kube
        self.anchors = FileAnchors(path)
        self._changed = asyncio.Event()
        self.anchors.subscribe(lambda _: self._changed.set())

    async def start(self) -> None:
        await patch_ca_bundle(self.kube, self.anchors.pem())

    async def run(self) -> None:
        watcher = asyncio.create_task(self.anchors.run())
        try:
            while True:
                await self._changed.wait()
                self._changed.clear()
                try:
                    await patch_ca_bundle(self.kube, self.anchors.pem())
                except ConfigError as err:  # keep serving; the next change retries
                    log.error("%s", err)
        finally:
            watcher.cancel()
