"""``dapr_runtime_*`` metrics (spec §8.3) on the sidecar's metrics port, at ``GET /``.

The ``dapr_runtime_mtls_*`` counters are ``pysentry.security.metrics.SecurityMetrics`` on this
sidecar's registry; the ACL counters are ours.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from pysentry.security.metrics import SecurityMetrics


class SidecarMetrics:
    """One registry per sidecar (tests can run several in one process)."""

    def __init__(self, app_id: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.app_id = app_id
        self.security = SecurityMetrics.create(self.registry, app_id)
        self.acl_allowed = Counter(
            "dapr_runtime_acl_app_policy_action_allowed",
            "The number of requests allowed by the app specific action specified in the access "
            "control policy.",
            ["app_id"],
            registry=self.registry,
        )
        self.acl_blocked = Counter(
            "dapr_runtime_acl_app_policy_action_blocked",
            "The number of requests blocked by the app specific action specified in the access "
            "control policy.",
            ["app_id"],
            registry=self.registry,
        )

    def acl_decision(self, allowed: bool) -> None:
        (self.acl_allowed if allowed else self.acl_blocked).labels(self.app_id).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            resp = web.Response(body=self.exposition())
            resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
            return resp

        app = web.Application()
        app.router.add_get("/", handle)
        app.router.add_get("/metrics", handle)
        return app
