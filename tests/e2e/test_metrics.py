"""A scrape of real daprds' metrics ports after real calls: Dapr v1.16's names, labels, buckets.

Sentry, three sidecars over mTLS: appA (no app) calls appB (HTTP app) through the HTTP and the
gRPC API, and appC (a grpcio app) through gRPC proxying. Each sidecar's scrape is parsed and
checked against what Dapr's ``pkg/diagnostics`` would export for the same calls.
"""

from __future__ import annotations

import re
import sys

import aiohttp
from google.protobuf import empty_pb2
from grpclib.client import Channel
from grpclib.const import Cardinality
from grpclib.exceptions import GRPCError

from pysentry.proto.dapr.proto.common.v1 import common_pb2
from pysentry.proto.dapr.proto.runtime.v1 import dapr_pb2
from pysentry.sidecar.relay import RawMessage
from tests.e2e.conftest import APPS, Cluster, Daprd, free_port, wait_tcp

LATENCY = [
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "8",
    "10",
    "13",
    "16",
    "20",
    "25",
    "30",
    "40",
    "50",
    "65",
    "80",
    "100",
    "130",
    "160",
    "200",
    "250",
    "300",
    "400",
    "500",
    "650",
    "800",
    "1000",
    "2000",
    "5000",
    "10000",
    "20000",
    "50000",
    "100000",
    "+Inf",
]
SIZES = [
    "1024",
    "2048",
    "4096",
    "16384",
    "65536",
    "262144",
    "1.048576e+06",
    "4.194304e+06",
    "1.6777216e+07",
    "6.7108864e+07",
    "2.68435456e+08",
    "1.073741824e+09",
    "4.294967296e+09",
    "+Inf",
]
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

ACL = """  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: appA
      defaultAction: deny
      trustDomain: public
      namespace: default
      operations:
{ops}"""
B_OPS = "      - name: /echo/*\n        httpVerb: ['*']\n        action: allow\n"
C_OPS = "".join(f"      - name: /test.Echo/{m}\n        action: allow\n" for m in ("Say", "Fail"))
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Scrape:
    def __init__(self, text: str) -> None:
        self.text = text
        self.types: dict[str, str] = {}
        self.samples: Series = {}
        self.order: list[tuple[str, list[str]]] = []  # (name, label names in order)
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ")
                self.types[name] = kind
                continue
            if line.startswith("#") or not line:
                continue
            m = _SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            pairs = _PAIR.findall(m.group(2) or "")
            self.order.append((m.group(1), [k for k, _ in pairs]))
            self.samples[(m.group(1), frozenset(pairs))] = float(m.group(3))

    def value(self, name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        assert key in self.samples, f"{name}{labels} not in scrape:\n{self.text}"
        return self.samples[key]

    def series(self, name: str) -> list[dict[str, str]]:
        return [dict(labels) for (n, labels) in self.samples if n == name]

    def buckets(self, name: str, **labels: str) -> list[str]:
        out = []
        for (n, pairs), _ in self.samples.items():
            d = dict(pairs)
            if (
                n == f"{name}_bucket"
                and set(d) - {"le"} == set(labels)
                and d.items() >= labels.items()
            ):
                out.append(d["le"])
        return out


async def scrape(session: aiohttp.ClientSession, d: Daprd) -> Scrape:
    async with session.get(f"http://127.0.0.1:{d.metrics_port}/") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return Scrape(await r.text())


async def test_dapr_metrics_after_http_grpc_and_proxied_calls(cluster: Cluster) -> None:
    sentry_port, anchors, _ = await cluster.mtls_sentry()
    _, app_port = await cluster.app("b")
    echo_port = free_port()
    cluster.spawn("app-echo", [sys.executable, str(APPS / "grpc_echo.py"), str(echo_port)])
    await wait_tcp(echo_port)
    mtls = {"sentry_port": sentry_port, "anchors_file": anchors}
    b = await cluster.daprd(
        "appB",
        app_port,
        config_extra=ACL.format(ops=B_OPS),
        **mtls,  # type: ignore[arg-type]
    )
    c = await cluster.daprd(
        "appC",
        echo_port,
        args=["--app-protocol", "grpc"],
        config_extra=ACL.format(ops=C_OPS),
        **mtls,  # type: ignore[arg-type]
    )
    a = await cluster.daprd("appA", **mtls)  # type: ignore[arg-type]

    path = "/v1.0/invoke/appB/method/echo/x"
    async with aiohttp.ClientSession() as s:
        for _ in range(3):
            async with s.post(f"{a.url}{path}", data=b"0123456789") as r:
                assert r.status == 200
        async with s.get(f"{a.url}{path}?status=503") as r:
            assert r.status == 503
        async with s.post(f"{a.url}/v1.0/invoke/appB/method/secret") as r:
            assert r.status == 403  # appB's ACL
        async with s.request("PROPFIND", f"{a.url}/v1.0/invoke/appB/method/echo") as r:
            assert r.status == 500  # not an HTTP verb Dapr invokes with

        request = dapr_pb2.InvokeServiceRequest(
            id="appB",
            message=common_pb2.InvokeRequest(
                method="echo/g",
                content_type="text/plain",
                http_extension=common_pb2.HTTPExtension(verb=common_pb2.HTTPExtension.POST),
            ),
        )
        request.message.data.value = b"hello"
        channel = Channel("127.0.0.1", a.grpc_port)
        try:
            api = "/dapr.proto.runtime.v1.Dapr/"
            async with channel.request(
                api + "InvokeService",
                Cardinality.UNARY_UNARY,
                dapr_pb2.InvokeServiceRequest,
                common_pb2.InvokeResponse,
            ) as stream:
                await stream.send_message(request, end=True)
                invoked = await stream.recv_message()
                await stream.recv_trailing_metadata()
            assert invoked is not None and b'"app": "b"' in invoked.data.value
            async with channel.request(
                api + "GetState",
                Cardinality.UNARY_UNARY,
                empty_pb2.Empty,
                empty_pb2.Empty,
            ) as stream:
                await stream.send_message(empty_pb2.Empty(), end=True)
                try:
                    await stream.recv_message()
                    raise AssertionError("GetState answered")
                except GRPCError as err:
                    assert err.status.name == "UNIMPLEMENTED"
            for method, ok in (("/test.Echo/Say", True), ("/test.Echo/Fail", False)):
                async with channel.request(
                    method,
                    Cardinality.UNARY_UNARY,
                    RawMessage,
                    RawMessage,
                    metadata={"dapr-app-id": "appC"},
                ) as stream:
                    await stream.send_message(RawMessage(b"hi"), end=True)
                    try:
                        await stream.recv_message()
                        await stream.recv_trailing_metadata()
                        assert ok
                    except GRPCError as err:
                        assert not ok and err.status.name == "NOT_FOUND"
        finally:
            channel.close()

        sa, sb, sc = await scrape(s, a), await scrape(s, b), await scrape(s, c)

    # Shapes: Dapr's OpenCensus exporter adds no suffix and writes no _created series.
    assert sa.types["dapr_http_server_request_count"] == "counter"
    assert sa.types["dapr_http_server_latency"] == "histogram"
    assert sa.types["dapr_runtime_service_invocation_req_sent_total"] == "counter"
    assert sa.types["dapr_runtime_mtls_init_total"] == "counter"
    assert "_created" not in sa.text
    assert "dapr_http_server_request_count_total" not in sa.text
    families = [line.split(" ")[2] for line in sa.text.splitlines() if line.startswith("# TYPE")]
    assert families == sorted(families)
    for name, labels in sa.order:  # label pairs sorted by name, le last
        plain = [k for k in labels if k != "le"]
        assert plain == sorted(plain), (name, labels)

    # --- appA, HTTP API: Dapr's increasedCardinality default keeps the full path.
    http = {"app_id": "appA", "method": "POST", "path": path, "status": "200"}
    assert sa.value("dapr_http_server_request_count", **http) == 3
    assert sa.value("dapr_http_server_response_count", **http) == 3
    assert sa.value("dapr_http_server_latency_count", **http) == 3
    assert sa.buckets("dapr_http_server_latency", **http) == LATENCY
    assert sa.value("dapr_http_server_latency_bucket", **http, le="+Inf") == 3
    get503 = {"app_id": "appA", "method": "GET", "path": path, "status": "503"}
    assert sa.value("dapr_http_server_request_count", **get503) == 1
    brew = {**http, "method": "UNKNOWN", "path": "/v1.0/invoke/appB/method/echo", "status": "500"}
    assert sa.value("dapr_http_server_request_count", **brew) == 1
    health = {**http, "method": "GET", "path": "/v1.0/healthz/outbound", "status": "204"}
    assert sa.value("dapr_http_server_request_count", **health) >= 1
    total = sum(v for (n, _), v in sa.samples.items() if n == "dapr_http_server_request_count")
    assert sa.value("dapr_http_server_request_bytes_count", app_id="appA") == total
    assert sa.buckets("dapr_http_server_request_bytes", app_id="appA") == SIZES
    assert sa.value("dapr_http_server_request_bytes_sum", app_id="appA") == 30  # 3 x 10 bytes
    assert sa.value("dapr_http_server_response_bytes_bucket", app_id="appA", le="1024") == total

    # --- appA, gRPC API: unary RPCs with Go's status names; the proxied calls too.
    grpc = {"app_id": "appA", "grpc_server_status": "OK"}
    invoke = {**grpc, "grpc_server_method": "/dapr.proto.runtime.v1.Dapr/InvokeService"}
    assert sa.value("dapr_grpc_io_server_completed_rpcs", **invoke) == 1
    assert sa.value("dapr_grpc_io_server_server_latency_count", **invoke) == 1
    assert sa.buckets("dapr_grpc_io_server_server_latency", **invoke) == LATENCY
    sized = {"app_id": "appA", "grpc_server_method": invoke["grpc_server_method"]}
    assert sa.value("dapr_grpc_io_server_received_bytes_per_rpc_sum", **sized) == (
        request.ByteSize()
    )
    assert sa.value("dapr_grpc_io_server_sent_bytes_per_rpc_count", **sized) == 1
    assert sa.value("dapr_grpc_io_server_sent_bytes_per_rpc_sum", **sized) == (invoked.ByteSize())
    assert sa.buckets("dapr_grpc_io_server_sent_bytes_per_rpc", **sized) == SIZES
    state = {
        "app_id": "appA",
        "grpc_server_method": "/dapr.proto.runtime.v1.Dapr/GetState",
        "grpc_server_status": "Unimplemented",
    }
    assert sa.value("dapr_grpc_io_server_completed_rpcs", **state) == 1
    say = {**grpc, "grpc_server_method": "/test.Echo/Say"}
    assert sa.value("dapr_grpc_io_server_completed_rpcs", **say) == 1
    fail = {**say, "grpc_server_method": "/test.Echo/Fail", "grpc_server_status": "NotFound"}
    assert sa.value("dapr_grpc_io_server_completed_rpcs", **fail) == 1
    # a proxied call records no byte sizes (Dapr's stream interceptor)
    assert not [
        x
        for x in sa.series("dapr_grpc_io_server_received_bytes_per_rpc_count")
        if x["grpc_server_method"].startswith("/test.")
    ]

    # --- appA, caller side of service invocation: HTTP status for invoke, gRPC code for proxy.
    sent = {"app_id": "appA", "dst_app_id": "appB", "type": "unary"}
    assert sa.value("dapr_runtime_service_invocation_req_sent_total", **sent) == 6
    recv = {"app_id": "appA", "src_app_id": "appB", "type": "unary"}
    assert sa.value("dapr_runtime_service_invocation_res_recv_total", **recv, status="200") == 4
    assert sa.value("dapr_runtime_service_invocation_res_recv_total", **recv, status="503") == 1
    lat = {"app_id": "appA", "src_app_id": "appB", "status": "200"}
    assert sa.value("dapr_runtime_service_invocation_res_recv_latency_ms_count", **lat) == 4
    assert sa.buckets("dapr_runtime_service_invocation_res_recv_latency_ms", **lat) == LATENCY
    to_c = {"app_id": "appA", "dst_app_id": "appC", "type": "unary"}
    assert sa.value("dapr_runtime_service_invocation_req_sent_total", **to_c) == 2
    from_c = {"app_id": "appA", "src_app_id": "appC", "type": "unary"}
    assert sa.value("dapr_runtime_service_invocation_res_recv_total", **from_c, status="0") == 1
    assert sa.value("dapr_runtime_service_invocation_res_recv_total", **from_c, status="5") == 1
    # the PROPFIND call never left appA
    assert sa.value("dapr_runtime_mtls_init_total", app_id="appA") == 1

    # --- appB, callee side: Dapr labels the caller dst_app_id on res_sent.
    assert (
        sb.value("dapr_runtime_service_invocation_req_recv_total", app_id="appB", src_app_id="appA")
        == 5
    )
    res = {"app_id": "appB", "dst_app_id": "appA"}
    assert sb.value("dapr_runtime_service_invocation_res_sent_total", **res, status="200") == 4
    assert sb.value("dapr_runtime_service_invocation_res_sent_total", **res, status="503") == 1
    # the ACL counters name the caller (Dapr's emitACLMetrics); the denied call got no further
    caller = {"app_id": "appA", "trustDomain": "public", "namespace": "default"}
    assert sb.value("dapr_runtime_acl_app_policy_action_allowed_total", **caller) == 5
    assert sb.value("dapr_runtime_acl_app_policy_action_blocked_total", **caller) == 1
    assert not sb.series("dapr_runtime_acl_global_policy_action_blocked_total")
    assert sc.value("dapr_runtime_acl_app_policy_action_allowed_total", **caller) == 2
    assert sb.types["dapr_runtime_acl_app_policy_action_allowed_total"] == "counter"
    # CallLocalStream is a stream without dapr-app-id: Dapr's internal server records nothing
    assert not sb.series("dapr_grpc_io_server_completed_rpcs")
    assert not sb.series("dapr_runtime_service_invocation_req_sent_total")
    # appC served proxied calls only: no service-invocation or gRPC server series
    assert not sc.series("dapr_runtime_service_invocation_req_recv_total")
    assert not sc.series("dapr_grpc_io_server_completed_rpcs")
