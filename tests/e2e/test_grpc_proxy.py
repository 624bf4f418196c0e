"""gRPC proxying: a grpcio client calls another app's own gRPC service through two sidecars.

The call goes to sidecar A's gRPC API port with ``dapr-app-id: appE``, over the mTLS hop to
sidecar E, which checks its ACL (operation = the full method name) and relays it to the app.
Unary, bidi streaming, status and metadata pass through.
"""

from __future__ import annotations

import asyncio
import json
import sys

import grpc
import pytest

from tests.e2e.conftest import APPS, Cluster, free_port, wait_tcp

ACL = """  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: appA
      defaultAction: deny
      trustDomain: public
      namespace: default
      operations:
      - name: /test.Echo/Say
        action: allow
      - name: /test.Echo/Fail
        action: allow
"""


def _identity(raw: bytes) -> bytes:
    return raw


def _calls(port: int) -> dict[str, object]:
    """Run the grpcio client (blocking) against sidecar A's gRPC API."""
    out: dict[str, object] = {}
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        md = (("dapr-app-id", "appE"), ("dapr-caller-app-id", "forged"), ("x-custom", "1"))
        say = channel.unary_unary("/test.Echo/Say", _identity, _identity)
        body, call = say.with_call(b"hello", metadata=md, timeout=20)
        out["say"] = json.loads(body)
        out["say_headers"] = dict(call.initial_metadata())
        chat = channel.stream_stream("/test.Echo/Chat", _identity, _identity)
        try:
            list(chat(iter([b"a", b"b"]), metadata=md, timeout=20))
        except grpc.RpcError as err:
            out["chat"] = [err.code().name, err.details()]
        fail = channel.unary_unary("/test.Echo/Fail", _identity, _identity)
        try:
            fail(b"", metadata=md, timeout=20)
        except grpc.RpcError as err:
            out["fail"] = [err.code().name, err.details()]
        try:
            say(b"", timeout=20)  # no dapr-app-id
        except grpc.RpcError as err:
            out["no_target"] = [err.code().name, err.details()]
    return out


def _chat_open(port: int) -> list[bytes]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        chat = channel.stream_stream("/test.Echo/Chat", _identity, _identity)
        md = (("dapr-app-id", "appE"),)
        return list(chat(iter([b"one", b"two", b"three"]), metadata=md, timeout=20))


@pytest.mark.parametrize("acl", [True, False], ids=["acl", "no-acl"])
async def test_grpc_proxying_through_two_sidecars(cluster: Cluster, acl: bool) -> None:
    sentry_port, anchors, _ = await cluster.mtls_sentry()
    port = free_port()
    cluster.spawn("app-echo", [sys.executable, str(APPS / "grpc_echo.py"), str(port)])
    await wait_tcp(port)
    await cluster.daprd(
        "appE",
        port,
        sentry_port=sentry_port,
        anchors_file=anchors,
        args=["--app-protocol", "grpc"],
        config_extra=ACL if acl else "",
    )
    a = await cluster.daprd("appA", sentry_port=sentry_port, anchors_file=anchors)
    if not acl:
        assert await asyncio.to_thread(_chat_open, a.grpc_port) == [b"ONE", b"TWO", b"THREE"]
        return
    out = await asyncio.to_thread(_calls, a.grpc_port)
    say = out["say"]
    assert isinstance(say, dict)
    assert say["body"] == "hello"
    # identity comes from the caller's SVID, never from what the app sent
    assert say["metadata"]["dapr-caller-app-id"] == ["appA"]
    assert say["metadata"]["dapr-caller-namespace"] == ["default"]
    assert say["metadata"]["dapr-callee-app-id"] == ["appE"]
    assert say["metadata"]["x-custom"] == ["1"]
    assert "dapr-app-id" not in say["metadata"]
    assert out["say_headers"]["x-echo"] == "yes"
    code, details = out["chat"]  # type: ignore[misc]
    assert code == "PERMISSION_DENIED"
    assert "has denied access to id: spiffe://public/ns/default/appA" in details
    assert "operation: /test.Echo/Chat" in details
    assert out["fail"] == ["NOT_FOUND", "no such thing"]
    code, details = out["no_target"]  # type: ignore[misc]
    assert code == "UNKNOWN"
    assert "required metadata dapr-callee-app-id or dapr-app-id not found" in details
