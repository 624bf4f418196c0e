"""daprd's metric families of Dapr v1.16's ``pkg/diagnostics``: names, help texts, labels, buckets.

The ACL, server and service-invocation metrics (``http_monitoring.go``, ``grpc_monitoring.go``,
``service_monitoring.go``), each a :mod:`pysentry.sidecar.views` family, declared once per
sidecar. Recording into them is :class:`pysentry.sidecar.metrics.SidecarMetrics`'s, which is a
:class:`SidecarFamilies`.
"""

from __future__ import annotations

from pysentry.sidecar.views import (
    LATENCY_BOUNDS_MS,
    SIZE_BOUNDS,
    CounterFamily,
    Family,
    HistogramFamily,
)


class SidecarFamilies:
    """Every family of one sidecar, as attributes, and all of them in ``families``."""

    def __init__(self) -> None:
        acl = ("app_id", "trustDomain", "namespace")
        text = "The number of requests {} by the {} action specified in the access control policy."
        self.acl = {
            (policy, allowed): CounterFamily(
                f"dapr_runtime_acl_{policy}_policy_action_{word}_total",
                text.format(word, "app specific" if policy == "app" else "global"),
                acl,
            )
            for policy in ("app", "global")
            for allowed, word in ((True, "allowed"), (False, "blocked"))
        }
        server = ("app_id", "method", "path", "status")
        self.http_request_count = CounterFamily(
            "dapr_http_server_request_count",
            "Count of HTTP requests processed by the server.",
            server,
        )
        self.http_latency = HistogramFamily(
            "dapr_http_server_latency",
            "HTTP request end-to-end latency in server.",
            server,
            LATENCY_BOUNDS_MS,
        )
        self.http_response_count = CounterFamily(
            "dapr_http_server_response_count", "The number of HTTP responses", server
        )
        self.http_request_bytes = HistogramFamily(
            "dapr_http_server_request_bytes",
            "HTTP request body size if set as ContentLength (uncompressed) in server.",
            ("app_id",),
            SIZE_BOUNDS,
        )
        self.http_response_bytes = HistogramFamily(
            "dapr_http_server_response_bytes",
            "HTTP response body size (uncompressed) in server.",
            ("app_id",),
            SIZE_BOUNDS,
        )
        grpc = ("app_id", "grpc_server_method", "grpc_server_status")
        self.grpc_completed = CounterFamily(
            "dapr_grpc_io_server_completed_rpcs",
            "Distribution of bytes sent per RPC, by method.",  # sic, Dapr's text
            grpc,
        )
        self.grpc_latency = HistogramFamily(
            "dapr_grpc_io_server_server_latency",
            "Time between first byte of request received to last byte of response sent, or "
            "terminal error.",
            grpc,
            LATENCY_BOUNDS_MS,
        )
        self.grpc_received_bytes = HistogramFamily(
            "dapr_grpc_io_server_received_bytes_per_rpc",
            "Total bytes received across all messages per RPC.",
            grpc[:2],
            SIZE_BOUNDS,
        )
        self.grpc_sent_bytes = HistogramFamily(
            "dapr_grpc_io_server_sent_bytes_per_rpc",
            "Total bytes sent in across all response messages per RPC.",
            grpc[:2],
            SIZE_BOUNDS,
        )
        prefix = "dapr_runtime_service_invocation_"
        self.req_sent = CounterFamily(
            prefix + "req_sent_total",
            "The number of requests sent via service invocation.",
            ("app_id", "dst_app_id", "type"),
        )
        self.req_recv = CounterFamily(
            prefix + "req_recv_total",
            "The number of requests received via service invocation.",
            ("app_id", "src_app_id"),
        )
        self.res_sent = CounterFamily(
            prefix + "res_sent_total",
            "The number of responses sent via service invocation.",
            ("app_id", "dst_app_id", "status"),
        )
        self.res_recv = CounterFamily(
            prefix + "res_recv_total",
            "The number of responses received via service invocation.",
            ("app_id", "src_app_id", "status", "type"),
        )
        self.res_recv_latency = HistogramFamily(
            prefix + "res_recv_latency_ms",
            "The latency of service invocation response.",
            ("app_id", "src_app_id", "status"),
            LATENCY_BOUNDS_MS,
        )
        self.families: tuple[Family, ...] = (
            *self.acl.values(),
            self.http_request_count,
            self.http_latency,
            self.http_response_count,
            self.http_request_bytes,
            self.http_response_bytes,
            self.grpc_completed,
            self.grpc_latency,
            self.grpc_received_bytes,
            self.grpc_sent_bytes,
            self.req_sent,
            self.req_recv,
            self.res_sent,
            self.res_recv,
            self.res_recv_latency,
        )
