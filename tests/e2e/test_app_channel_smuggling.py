"""A caller cannot write a second request to the callee's app, nor forge the identity it stamps.

A real Sentry, a caller sidecar ``a`` and a callee sidecar ``b`` whose ACL lets ``a`` reach only
``GET /public``. ``b``'s app is a raw TCP server that records every byte it receives and answers
each request head with ``200 ok``. Over the fast path and over gRPC (``--pysentry-fastpath=false``
on both sidecars), a query string with CR/LF, a header name that is not a token and a header
value with a control character must each fail the call, as Go's ``net/url`` and ``net/http``
refuse them, with not one byte sent to the app. Then an honest call reaches the app as one
request, with the stamped identity, on a connection that carries nothing else.
"""

from __future__ import annotations

import asyncio

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from pysentry.proto.dapr.proto.common.v1 import common_pb2
from pysentry.proto.dapr.proto.internals.v1.service_invocation_grpc import ServiceInvocationStub
from pysentry.proto.dapr.proto.runtime.v1 import dapr_pb2
from pysentry.proto.dapr.proto.runtime.v1.dapr_grpc import DaprStub
from pysentry.sidecar import messages
from pysentry.sidecar.invocation import InvokeRequest
from pysentry.testing import TestCA
from tests.e2e.conftest import Cluster, Daprd, svid_client_context

ACL = """  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: a
      defaultAction: deny
      trustDomain: public
      namespace: default
      operations:
      - name: /public
        httpVerb: ['GET']
        action: allow
"""

#: How the caller's sidecar reports the callee's refusal (as Dapr's does).
CALLER = "failed to invoke, id: b, err: rpc error: code = Internal desc = "
SMUGGLED_QUERY = (
    "x=1 HTTP/1.1\r\nHost: b\r\n\r\nPOST /admin/delete-all HTTP/1.1\r\nHost: b\r\n"
    "dapr-caller-app-id: admin\r\nContent-Length: 0\r\n\r\nGET /public?y=2"
)


class RawApp:
    """Records every byte; answers each complete request head with ``200 ok``."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        pending = b""
        try:
            while data := await reader.read(65536):
                self.received += data
                pending += data
                while b"\r\n\r\n" in pending:
                    _, _, pending = pending.partition(b"\r\n\r\n")
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except ConnectionError:
            pass
        finally:
            writer.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()


async def _setup(cluster: Cluster, fastpath: bool) -> tuple[Daprd, Daprd, RawApp, TestCA]:
    sentry_port, anchors, ca = await cluster.mtls_sentry()
    app = RawApp()
    await app.start()
    args = [] if fastpath else ["--pysentry-fastpath=false"]
    b = await cluster.daprd(
        "b", app.port, sentry_port=sentry_port, anchors_file=anchors, config_extra=ACL, args=args
    )
    a = await cluster.daprd("a", sentry_port=sentry_port, anchors_file=anchors, args=args)
    return a, b, app, ca


def _invoke(query: str = "", content_type: str = "") -> dapr_pb2.InvokeServiceRequest:
    return dapr_pb2.InvokeServiceRequest(
        id="b",
        message=common_pb2.InvokeRequest(
            method="public",
            content_type=content_type,
            http_extension=common_pb2.HTTPExtension(
                verb=common_pb2.HTTPExtension.GET, querystring=query
            ),
        ),
    )


@pytest.mark.parametrize("fastpath", [True, False], ids=["fastpath", "grpc"])
async def test_no_request_smuggling_into_the_app(cluster: Cluster, fastpath: bool) -> None:
    a, b, app, ca = await _setup(cluster, fastpath)
    url = f"http://127.0.0.1:{app.port}/public"
    channel = Channel("127.0.0.1", a.grpc_port)
    try:
        dapr = DaprStub(channel)
        with pytest.raises(GRPCError) as err:
            await dapr.InvokeService(_invoke(SMUGGLED_QUERY), timeout=10)
        assert err.value.status is Status.INTERNAL, err.value
        assert err.value.message == (
            f'{CALLER}error invoking app channel: parse "{url}'
            "?x=1 HTTP/1.1\\r\\nHost: b\\r\\n\\r\\n"
            "POST /admin/delete-all HTTP/1.1\\r\\nHost: b\\r\\ndapr-caller-app-id: admin\\r\\n"
            'Content-Length: 0\\r\\n\\r\\nGET /public?y=2": net/url: invalid control character '
            "in URL"
        )
        with pytest.raises(GRPCError) as err:
            await dapr.InvokeService(_invoke(content_type="text/plain\r\nx-b: w"), timeout=10)
        assert err.value.status is Status.INTERNAL, err.value
        assert err.value.message == (
            f'{CALLER}error invoking app channel: Get "{url}": net/http: invalid header field '
            'value for "Content-Type"'
        )
        assert bytes(app.received) == b""

        # Header names and values straight from a peer holding an SVID (a Go daprd could send
        # these: protobuf metadata keys are any string), over gRPC to the internal port.
        internal = Channel("127.0.0.1", b.internal_port, ssl=svid_client_context(cluster, ca, "a"))
        try:
            stub = ServiceInvocationStub(internal)
            for name, value, why in (
                ("dapr-caller-app-id:admin x-pad", "1", 'name "dapr-caller-app-id:admin x-pad"'),
                ("transfer-encoding ", "chunked", 'name "transfer-encoding "'),
                ("x-a", "v\x00w", 'value for "x-a"'),
            ):
                msg = messages.request_to_proto(InvokeRequest("public", verb="GET"))
                msg.metadata[name].values.append(value)
                with pytest.raises(GRPCError) as err:
                    await stub.CallLocal(msg, timeout=10)
                assert err.value.status is Status.INTERNAL, (name, err.value)
                assert err.value.message == (
                    f'error invoking app channel: Get "{url}": net/http: invalid header field '
                    + why
                ), name
        finally:
            internal.close()
        assert bytes(app.received) == b""

        honest = await dapr.InvokeService(_invoke("y=2"), timeout=10)
        assert honest.data.value == b"ok"
    finally:
        channel.close()
        app.close()
    head = bytes(app.received).decode()
    assert head.startswith("GET /public?y=2 HTTP/1.1\r\n"), head
    assert head.count("HTTP/1.1") == 1 and head.endswith("\r\n\r\n"), head
    assert head.lower().count("dapr-caller-app-id:") == 1, head
    assert "dapr-caller-app-id: a\r\n" in head, head
