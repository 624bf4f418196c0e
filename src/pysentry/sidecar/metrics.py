"""daprd's metrics on the sidecar's metrics port (``GET /``), with Dapr v1.16's names and labels.

* ``dapr_runtime_mtls_*`` (:class:`pysentry.security.metrics.SecurityMetrics`) are
  ``prometheus_client`` counters on :attr:`SidecarMetrics.registry`.
* The ACL, server and service-invocation metrics of ``pkg/diagnostics`` (``http_monitoring.go``,
  ``grpc_monitoring.go``, ``service_monitoring.go``) are :mod:`pysentry.sidecar.views` families,
  declared in :mod:`pysentry.sidecar.families`, which render exactly as Dapr's OpenCensus
  exporter does (no ``_total`` added, Go number shapes).

The scrape is client_golang's text format, families sorted by name, without ``_created`` series.
Latencies are whole milliseconds, truncated, as Dapr's ``float64(elapsed / time.Millisecond)``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from pysentry.security.metrics import SecurityMetrics
from pysentry.sidecar.families import SidecarFamilies
from pysentry.sidecar.http_labels import HTTP_VERBS, http_path_label
from pysentry.sidecar.policy import Decision
from pysentry.sidecar.views import Count, Distribution, escape, go_float
from pysentry.spiffe import SpiffeId

if TYPE_CHECKING:  # aiohttp is imported with the metrics server, after daprd's first identity
    from aiohttp import web

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNARY = "unary"
STREAMING = "streaming"

_HttpSeries = tuple[Count, Distribution, Count]


def elapsed_ms(start: float) -> int:
    """Whole milliseconds since ``start`` (a ``time.perf_counter()``), truncated as Go's."""
    return int((time.perf_counter() - start) * 1000)


class SidecarMetrics(SidecarFamilies):
    """One per sidecar (tests run several in one process). Recording methods are cheap: one
    cached lookup per label set."""

    def __init__(self, app_id: str) -> None:
        super().__init__()
        self.registry = CollectorRegistry(auto_describe=True)
        self.app_id = app_id
        self.security = SecurityMetrics.create(self.registry, app_id)
        self._http: dict[tuple[str, str, int], _HttpSeries] = {}
        self._grpc: dict[tuple[str, str], tuple[Count, Distribution]] = {}
        self._grpc_sizes: dict[str, tuple[Distribution, Distribution]] = {}
        self._sent: dict[tuple[str, str], Count] = {}
        self._recv: dict[tuple[str, int], tuple[Count, Distribution]] = {}
        self._recv_req: dict[str, Count] = {}
        self._sent_res: dict[tuple[str, int], Count] = {}
        self._acl_children: dict[tuple[SpiffeId | None, str, bool], Count] = {}
        self._http_bytes = (
            self.http_request_bytes.child(app_id),
            self.http_response_bytes.child(app_id),
        )

    # --- recording ------------------------------------------------------------------------
    def acl_decision(self, caller: SpiffeId | None, decision: Decision) -> None:
        """Dapr's ``emitACLMetrics``: labelled with the *caller's* app-id, trust domain and
        namespace."""
        key = (caller, decision.policy, decision.allowed)
        child = self._acl_children.get(key)
        if child is None:
            family = self.acl.get((decision.policy, decision.allowed))
            if family is None:
                return
            if caller is None:
                child = family.child("", "", "")
            else:
                td, ns = str(caller.trust_domain), caller.namespace or ""
                child = family.child(caller.app_id or "", td, ns)
            if not family.full(len(self._acl_children)):
                self._acl_children[key] = child
        child.inc()

    def http_served(
        self, method: str, path: str, status: int, req_size: int, res_size: int, start: float
    ) -> None:
        """One request served by the HTTP API (Dapr's ``HTTPMiddleware``)."""
        elapsed = elapsed_ms(start)
        key = (method, path, status)
        series = self._http.get(key)
        if series is None:
            series = self._http_series(key)
        series[0].inc()
        series[1].observe(elapsed)
        series[2].inc()
        self._http_bytes[0].observe(req_size)
        self._http_bytes[1].observe(res_size)

    def _http_series(self, key: tuple[str, str, int]) -> _HttpSeries:
        method, path, status = key
        full = self.http_request_count.full(len(self._http))
        labels = (
            self.app_id,
            method if method in HTTP_VERBS else "UNKNOWN",
            "" if full else http_path_label(path),  # new paths fold once full
            str(status),
        )
        series = (
            self.http_request_count.child(*labels),
            self.http_latency.child(*labels),
            self.http_response_count.child(*labels),
        )
        if not full:
            self._http[key] = series
        return series

    def grpc_served(
        self, method: str, status: str, req_bytes: int | None, res_bytes: int, start: float
    ) -> None:
        """One RPC served by the gRPC API or internal server; ``req_bytes`` None for a proxied
        stream (Dapr records only the count and latency for those)."""
        elapsed = elapsed_ms(start)
        key = (method, status)
        series = self._grpc.get(key)
        if series is None:
            labels = (self.app_id, method, status)
            series = (self.grpc_completed.child(*labels), self.grpc_latency.child(*labels))
            if not self.grpc_completed.full(len(self._grpc)):
                self._grpc[key] = series
        series[0].inc()
        series[1].observe(elapsed)
        if req_bytes is not None:
            sizes = self._grpc_sizes.get(method)
            if sizes is None:
                sizes = (
                    self.grpc_received_bytes.child(self.app_id, method),
                    self.grpc_sent_bytes.child(self.app_id, method),
                )
                if not self.grpc_received_bytes.full(len(self._grpc_sizes)):
                    self._grpc_sizes[method] = sizes
            sizes[0].observe(req_bytes)
            sizes[1].observe(res_bytes)

    def request_sent(self, target: str, kind: str = UNARY) -> None:
        key = (target, kind)
        child = self._sent.get(key)
        if child is None:
            child = self.req_sent.child(self.app_id, target, kind)
            if not self.req_sent.full(len(self._sent)):
                self._sent[key] = child
        child.inc()

    def response_received(self, target: str, status: int, start: float) -> None:
        key = (target, status)
        pair = self._recv.get(key)
        if pair is None:
            code = str(status)
            pair = (
                self.res_recv.child(self.app_id, target, code, UNARY),
                self.res_recv_latency.child(self.app_id, target, code),
            )
            if not self.res_recv.full(len(self._recv)):
                self._recv[key] = pair
        pair[0].inc()
        pair[1].observe(elapsed_ms(start))

    def stream_response_received(self, target: str, status: int) -> None:
        self.res_recv.child(self.app_id, target, str(status), STREAMING).inc()

    def request_received(self, caller: str) -> None:
        child = self._recv_req.get(caller)
        if child is None:
            child = self.req_recv.child(self.app_id, caller)
            if not self.req_recv.full(len(self._recv_req)):
                self._recv_req[caller] = child
        child.inc()

    def response_sent(self, caller: str, status: int) -> None:
        key = (caller, status)
        child = self._sent_res.get(key)
        if child is None:
            # Dapr labels the caller of a served call ``dst_app_id``.
            child = self.res_sent.child(self.app_id, caller, str(status))
            if not self.res_sent.full(len(self._sent_res)):
                self._sent_res[key] = child
        child.inc()

    # --- scrape ---------------------------------------------------------------------------
    def _registry_lines(self) -> Iterator[tuple[str, str]]:
        for metric in self.registry.collect():
            name = metric.name + "_total" if metric.type == "counter" else metric.name
            samples = [s for s in metric.samples if not s.name.endswith("_created")]
            if not samples:
                continue
            lines = [f"# HELP {name} {metric.documentation}\n# TYPE {name} {metric.type}\n"]
            for sample in sorted(samples, key=lambda s: sorted(s.labels.items())):
                pairs = ",".join(f'{k}="{escape(v)}"' for k, v in sorted(sample.labels.items()))
                labels = f"{{{pairs}}}" if pairs else ""
                lines.append(f"{sample.name}{labels} {go_float(sample.value)}\n")
            yield name, "".join(lines)

    def exposition(self) -> bytes:
        parts = dict(self._registry_lines())
        for family in self.families:
            text = "".join(family.render())
            if text:
                parts[family.name] = text
        return "".join(parts[name] for name in sorted(parts)).encode()

    def app(self) -> web.Application:
        from aiohttp import web

        async def handle(request: web.Request) -> web.Response:
            return web.Response(body=self.exposition(), headers={"Content-Type": CONTENT_TYPE})

        app = web.Application()
        app.router.add_get("/", handle)
        app.router.add_get("/metrics", handle)
        return app
