"""The invocation path in one process, plaintext: HTTP API -> CallLocal(Stream) -> app channel."""

from __future__ import annotations

import base64
import json
from typing import Any

from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from pysentry.config.acl import AccessControlList
from pysentry.config.configuration import parse_configuration
from pysentry.sidecar.internal_server import ServiceInvocation


async def test_status_headers_body_and_query_pass_through(mesh_factory: Any) -> None:
    mesh = await mesh_factory()
    async with mesh.session.post(
        f"{mesh.url}/v1.0/invoke/appB/method/echo/orders?status=201&k=v%20w",
        data=b'{"x":1}',
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "X-Custom": "c1",
            "dapr-caller-app-id": "spoofed",
        },
    ) as resp:
        body = await resp.json()
        assert resp.status == 201
        assert resp.headers["X-From-App"] == "app"
        assert resp.headers["Content-Type"] == "application/json"  # as the app sent it
    assert body["method"] == "POST" and body["path"] == "/echo/orders"
    assert body["query"] == "status=201&k=v%20w" and body["body"] == '{"x":1}'
    h = body["headers"]
    assert h["x-custom"] == "c1" and h["content-type"] == "application/json; charset=utf-8"
    assert h["dapr-caller-app-id"] == "appA" and h["dapr-caller-namespace"] == "default"
    assert h["dapr-callee-app-id"] == "appB"


async def test_every_verb_and_error_status_pass_through(mesh_factory: Any) -> None:
    mesh = await mesh_factory()
    for verb in ("GET", "PUT", "DELETE", "PATCH", "OPTIONS"):
        async with mesh.session.request(
            verb, f"{mesh.url}/v1.0/invoke/appB/method/echo?status=503"
        ) as r:
            assert r.status == 503, verb
            assert (await r.json())["method"] == verb
    async with mesh.session.head(f"{mesh.url}/v1.0/invoke/appB/method/echo") as r:
        assert r.status == 200


async def test_large_bodies_stream_in_chunks_both_ways(mesh_factory: Any) -> None:
    mesh = await mesh_factory()
    payload = bytes(range(256)) * 400  # 100 KiB -> 50 chunks each way
    async with mesh.session.post(f"{mesh.url}/v1.0/invoke/appB/method/raw", data=payload) as r:
        assert r.status == 200 and await r.read() == payload


async def test_header_routing_with_dapr_app_id(mesh_factory: Any) -> None:
    mesh = await mesh_factory()
    async with mesh.session.get(f"{mesh.url}/echo/x?q=1", headers={"dapr-app-id": "appB"}) as r:
        body = await r.json()
    assert body["path"] == "/echo/x" and body["query"] == "q=1"
    assert "dapr-app-id" not in body["headers"]
    basic = "Basic " + base64.b64encode(b"dapr-app-id:appB").decode()
    async with mesh.session.get(f"{mesh.url}/echo/y", headers={"Authorization": basic}) as r:
        assert r.status == 200 and (await r.json())["path"] == "/echo/y"


async def test_errors_have_daprs_shape(mesh_factory: Any) -> None:
    mesh = await mesh_factory()
    async with mesh.session.get(f"{mesh.url}/v1.0/invoke/nope/method/x") as r:
        assert r.status == 500
        body = await r.json()
    assert body["errorCode"] == "ERR_DIRECT_INVOKE"
    assert body["message"] == "failed to invoke, id: nope, err: no host found with the given ID"
    async with mesh.session.get(f"{mesh.url}/not/invoke") as r:
        assert r.status == 404
    async with mesh.session.get(f"{mesh.url}/v1.0/invoke/appB") as r:
        assert r.status == 404
        assert (await r.json())["errorCode"] == "ERR_DIRECT_INVOKE"


async def test_app_down_is_err_direct_invoke_500(mesh_factory: Any) -> None:
    mesh = await mesh_factory()
    mesh.resolver.register(mesh.resolver.list_registrations()[0])  # no-op refresh
    async with mesh.session.get(f"{mesh.url}/v1.0/invoke/appB.other/method/x") as r:
        assert r.status == 500


async def test_api_token(mesh_factory: Any) -> None:
    mesh = await mesh_factory(api_token="tok123")
    async with mesh.session.get(f"{mesh.url}/v1.0/invoke/appB/method/echo") as r:
        assert r.status == 401 and await r.text() == "invalid api token\n"
    async with mesh.session.get(
        f"{mesh.url}/v1.0/invoke/appB/method/echo", headers={"dapr-api-token": "tok123"}
    ) as r:
        assert r.status == 200
        assert "dapr-api-token" not in (await r.json())["headers"]
    for path in ("/v1.0/healthz", "/v1.0/healthz/outbound"):
        async with mesh.session.get(mesh.url + path) as r:
            assert r.status == 204
    async with mesh.session.get(mesh.url + "/v1.0/metadata") as r:
        assert r.status == 401


async def test_metadata(mesh_factory: Any) -> None:
    mesh = await mesh_factory()
    async with mesh.session.get(mesh.url + "/v1.0/metadata") as r:
        body = json.loads(await r.text())
    assert body["id"] == "appA" and body["mtls"] == {
        "enabled": False,
        "spiffeId": "",
        "certExpiry": "",
    }


class UnaryOnly(ServiceInvocation):
    streams = 0

    async def CallLocalStream(self, stream: Stream[Any, Any]) -> None:
        UnaryOnly.streams += 1
        raise GRPCError(Status.UNIMPLEMENTED, "Method not found")


async def test_falls_back_to_call_local_on_unimplemented(mesh_factory: Any) -> None:
    mesh = await mesh_factory(service_cls=UnaryOnly)
    for _ in range(3):
        async with mesh.session.post(
            f"{mesh.url}/v1.0/invoke/appB/method/raw", data=b"x" * 5000
        ) as r:
            assert r.status == 200 and len(await r.read()) == 5000
    assert UnaryOnly.streams == 1  # remembered per address


async def test_acl_denial_is_403(mesh_factory: Any) -> None:
    cfg = parse_configuration(
        "spec:\n  accessControl:\n    defaultAction: deny\n    trustDomain: public\n", "test"
    )
    acl = AccessControlList.from_spec(cfg.spec.access_control)
    mesh = await mesh_factory(acl=acl)
    async with mesh.session.get(f"{mesh.url}/v1.0/invoke/appB/method/echo") as r:
        assert r.status == 403
        body = await r.json()
    assert body["errorCode"] == "ERR_DIRECT_INVOKE"
    assert (
        "PermissionDenied" in body["message"]
        and "access control policy has denied" in body["message"]
    )


async def test_callee_drops_hop_by_hop_and_binary_metadata(mesh_factory: Any) -> None:
    from pysentry.sidecar.internal_client import InternalClient
    from pysentry.sidecar.invocation import InvokeRequest, Target

    mesh = await mesh_factory()
    client = InternalClient()
    try:
        resp = await client.call(
            f"127.0.0.1:{mesh.internal_port}",
            Target("appB", "default"),
            InvokeRequest(
                "echo",
                "PUT",
                headers=(
                    ("x-keep", "1"),
                    ("trace-bin", "AAE="),
                    ("connection", "close"),
                    ("destination-app-id", "appB"),
                    (":authority", "x"),
                ),
            ),
        )
    finally:
        client.close()
    seen = json.loads(resp.body)["headers"]
    assert seen["x-keep"] == "1"
    assert not {"trace-bin", "destination-app-id", ":authority"} & seen.keys()
    assert seen.get("connection") != "close"


async def test_connections_older_than_max_age_are_recycled(mesh_factory: Any) -> None:
    from datetime import timedelta

    from pysentry.sidecar.internal_client import InternalClient
    from pysentry.sidecar.invocation import InvokeRequest, Target

    mesh = await mesh_factory()
    now = [0.0]
    client = InternalClient(max_connection_age=timedelta(seconds=1), clock=lambda: now[0])
    address, target = f"127.0.0.1:{mesh.internal_port}", Target("appB", "default")
    try:
        for step in range(4):
            now[0] = step * 0.6  # a new channel every ~2 calls
            resp = await client.invoke(
                lambda: address, target, InvokeRequest("raw", "POST", body=b"x")
            )
            assert resp.status == 200 and resp.body == b"x"
    finally:
        client.close()
    assert client.recycled == 1  # t=1.2 > 0 + 1 s; the channel made at 1.2 is still young at 1.8
