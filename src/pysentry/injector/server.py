"""The mutating admission webhook: ``POST /mutate`` over HTTPS, answering with a JSONPatch.

At each admission it reads, as Dapr's injector does, the trust anchors (the ``ca.crt`` of the
ConfigMap ``dapr-trust-bundle`` in the control-plane namespace) and whether mTLS is on
(``daprsystem`` ``spec.mtls.enabled``; missing or unreadable means on, Dapr's default).
Without trust anchors a Pod that asks for a sidecar is refused with a message naming the fix,
rather than admitted without one.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

from aiohttp import web

from pysentry.injector.patch import (
    BadAnnotation,
    InjectorConfig,
    app_id,
    build_patch,
    wants_sidecar,
)
from pysentry.injector.review import BadReview, Review, allow, deny, parse_review
from pysentry.kube.client import KubeClient, KubeError

log = logging.getLogger("pysentry.injector")
BUNDLE = "dapr-trust-bundle"
MAX_BODY_BYTES = 4 << 20


class NoTrustAnchors(RuntimeError):
    pass


class Injector:
    def __init__(self, config: InjectorConfig, kube: KubeClient) -> None:
        self.config = config
        self.kube = kube

    async def trust_anchors(self) -> str:
        ns = self.config.control_plane_namespace
        try:
            cm = await self.kube.get(f"/api/v1/namespaces/{ns}/configmaps/{BUNDLE}")
        except KubeError as err:
            raise NoTrustAnchors(f"cannot read ConfigMap {ns}/{BUNDLE}: {err}") from err
        pem = str((cm.get("data") or {}).get("ca.crt") or "")
        if "-----BEGIN CERTIFICATE-----" not in pem:
            raise NoTrustAnchors(
                f"ConfigMap {ns}/{BUNDLE} has no ca.crt yet: Sentry writes it at its first "
                "start; start Sentry (or install your own certificates), then create the Pod again"
            )
        return pem

    async def mtls_enabled(self) -> bool:
        ns = self.config.control_plane_namespace
        path = f"/apis/dapr.io/v1alpha1/namespaces/{ns}/configurations/daprsystem"
        try:
            conf = await self.kube.get(path)
        except KubeError as err:
            log.warning("Reading Configuration %s/daprsystem: %s; mTLS stays enabled", ns, err)
            return True
        enabled = ((conf.get("spec") or {}).get("mtls") or {}).get("enabled", True)
        return enabled is not False

    async def review(self, review: Review) -> dict[str, Any]:
        if review.kind != "Pod" or review.operation != "CREATE":
            return allow(review, [])
        pod = review.pod
        if not wants_sidecar(pod):
            return allow(review, [])
        meta = dict(pod.get("metadata") or {})
        meta.setdefault("namespace", review.namespace)  # not always set at admission time
        pod = {**pod, "metadata": meta}
        try:
            anchors = await self.trust_anchors()
        except NoTrustAnchors as err:
            log.error("Sidecar injection for app %r refused: %s", app_id(pod), err)
            return deny(review, f"dapr sidecar injector: {err}")
        try:
            patch = build_patch(pod, self.config, anchors, mtls=await self.mtls_enabled())
        except BadAnnotation as err:
            return deny(review, f"dapr sidecar injector: {err}", code=400)
        log.info(
            "Sidecar injector succeeded injection for app %r in namespace %r",
            app_id(pod),
            meta["namespace"],
        )
        return allow(review, patch)

    async def handle(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return web.Response(
                status=400,
                text=f"invalid Content-Type {request.content_type!r}, expect `application/json`",
            )
        body = await request.read()
        try:
            review = parse_review(body)
        except BadReview as err:
            return web.Response(status=400, text=str(err))
        return web.json_response(await self.review(review))


def make_app(injector: Injector) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post("/mutate", injector.handle)
    app.router.add_get("/healthz", lambda _: _ok())
    return app


async def _ok() -> web.Response:
    return web.Response(text="ok")


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context
