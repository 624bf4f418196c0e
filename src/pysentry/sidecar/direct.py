"""Direct messaging: the caller side of service invocation (daprd's ``direct_messaging.go``).

Stamps ``dapr-caller-app-id``, ``dapr-caller-namespace`` and ``dapr-callee-app-id`` (stripping
any values the app sent), resolves the target and sends it over the internal client. A call to
the sidecar's own app-id goes straight to the local app channel. A remote call counts
``dapr_runtime_service_invocation_req_sent_total`` and, when a response comes back (any status),
``..._res_recv_total`` and ``..._res_recv_latency_ms``, as Dapr's ``invokeRemote``.
"""

from __future__ import annotations

import time
from typing import Protocol

from pysentry.sidecar.internal_client import InternalClient
from pysentry.sidecar.invocation import (
    AppChannel,
    InvokeRequest,
    InvokeResponse,
    Target,
    forward_stamped,
)
from pysentry.sidecar.metrics import SidecarMetrics


class NameResolver(Protocol):
    def resolve(self, app_id: str, namespace: str) -> str: ...

    def invalidate(self, app_id: str, namespace: str) -> None: ...


class DirectMessaging:
    def __init__(
        self,
        *,
        app_id: str,
        namespace: str,
        resolver: NameResolver,
        client: InternalClient,
        local: AppChannel | None,
        metrics: SidecarMetrics | None = None,
    ) -> None:
        self.app_id = app_id
        self.namespace = namespace
        self._resolver = resolver
        self._client = client
        self._local = local
        self._metrics = metrics
        self._self = Target(app_id, namespace)

    async def invoke(self, target: Target, request: InvokeRequest) -> InvokeResponse:
        headers = forward_stamped(request.headers, self.app_id, self.namespace, target.app_id)
        stamped = InvokeRequest(
            request.method, request.verb, request.query, request.content_type, headers, request.body
        )
        if self._local is not None and target == self._self:
            return await self._local.call(stamped)
        metrics = self._metrics
        if metrics is not None:
            start = time.perf_counter()
            metrics.request_sent(target.app_id)
        response = await self._client.invoke(
            lambda: self._resolver.resolve(target.app_id, target.namespace),
            target,
            stamped,
            forget=lambda: self._resolver.invalidate(target.app_id, target.namespace),
        )
        if metrics is not None:
            metrics.response_received(target.app_id, response.status, start)
        return response
