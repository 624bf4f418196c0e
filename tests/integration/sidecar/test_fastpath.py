"""The ``pysentry-invoke/2`` fast path against the gRPC path, on one callee, real mTLS.

Two callers dial the same callee: one offers ALPN ``pysentry-invoke/2`` then ``h2`` (the fast
path), the other only ``h2`` (gRPC, as a Go daprd). Whatever the call (bodies near and over the
limit, ACL allow and deny, a dead app, an unknown route, a deadline), A's HTTP API must answer
both byte for byte the same, and the callee must have served each on the protocol it agreed.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from pysentry.config.acl import AccessControlList
from pysentry.config.configuration import parse_configuration
from pysentry.sidecar.fastpath_protocol import ALPN
from pysentry.sidecar.fastpath_server import FastpathServer
from pysentry.sidecar.invocation import InvokeRequest, InvokeResponse, Target
from pysentry.testing import TestCA
from tests.apps.http_app import build
from tests.integration.sidecar.fastmesh import BODY_LIMIT, Caller, callee, caller, client

B = Target("appB", "default")
Answer = tuple[int, list[tuple[str, str]], bytes]


@pytest.fixture
def ca() -> TestCA:
    return TestCA.create()


@asynccontextmanager
async def pair(
    ca: TestCA, address: str, *, timeout_s: float = 10.0
) -> AsyncIterator[tuple[Caller, Caller]]:
    """A's HTTP API twice: over a fast-path client and over a gRPC-only one."""
    fast_client, _ = client(ca, fastpath=True, timeout_s=timeout_s)
    grpc_client, _ = client(ca, fastpath=False, timeout_s=timeout_s)
    async with caller(address, fast_client) as fast, caller(address, grpc_client) as grpc:
        yield fast, grpc


async def same(fast: Caller, grpc: Caller, verb: str, path: str, body: bytes = b"") -> Answer:
    """The one answer both callers got (asserted identical)."""
    a = await fast.call(verb, "appB", path, body, **{"X-Custom": "v", "dapr-caller-app-id": "evil"})
    b = await grpc.call(verb, "appB", path, body, **{"X-Custom": "v", "dapr-caller-app-id": "evil"})
    assert a == b, (verb, path, a[:2], b[:2], a[2][:300], b[2][:300])
    return a


def _error(answer: Answer) -> str:
    raw = answer[2]
    data = json.loads(raw)
    assert data["errorCode"] == "ERR_DIRECT_INVOKE", data
    return str(data["message"])


async def test_alpn_picks_the_fast_path_and_answers_match_grpc(ca: TestCA) -> None:
    async with callee(ca) as b, pair(ca, b.address) as (fast, grpc):
        status, headers, raw = await same(fast, grpc, "POST", "echo/sub?a=1&b=two", b"payload")
        assert status == 200 and ("x-from-app", "app") in headers
        seen = json.loads(raw)
        assert (seen["path"], seen["query"], seen["body"]) == ("/echo/sub", "a=1&b=two", "payload")
        # caller identity from the verified SVID; the spoofed header is gone
        assert seen["headers"]["dapr-caller-app-id"] == "appA"
        assert seen["headers"]["dapr-caller-namespace"] == "default"
        assert seen["headers"]["dapr-callee-app-id"] == "appB"
        assert seen["headers"]["x-custom"] == "v"
        assert (await same(fast, grpc, "GET", "echo?status=404"))[0] == 404
        assert (await same(fast, grpc, "GET", "no/such/route"))[0] == 404  # the app's own 404
        big = await same(fast, grpc, "GET", "big?n=3000000")
        assert big[0] == 200 and big[2] == b"x" * 3_000_000
        assert fast.client.fastpath is not None and grpc.client.fastpath is None
        assert fast.client.fastpath.transport(b.address, B) == ALPN
        assert isinstance(b.server, FastpathServer)
        assert b.server.accepted == Counter({ALPN: 1, "h2": 1})  # one connection each, reused


async def test_bodies_near_and_over_the_limit(ca: TestCA) -> None:
    async with callee(ca) as b, pair(ca, b.address) as (fast, grpc):
        body = bytes(range(256)) * (BODY_LIMIT // 256)
        status, _, raw = await same(fast, grpc, "PUT", "raw", body)
        assert status == 200 and raw == body
        over = await same(fast, grpc, "POST", "raw", body + b"!")
        assert over[0] == 413, over  # the HTTP API refuses it before any transport
        assert isinstance(b.server, FastpathServer) and b.server.accepted[ALPN] == 1


ACL = """spec:
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: appA
      defaultAction: deny
      trustDomain: public
      namespace: default
      operations:
      - name: /echo
        httpVerb: ['POST']
        action: allow
"""


async def test_acl_allow_and_deny_with_daprs_error(ca: TestCA) -> None:
    acl = AccessControlList.from_spec(parse_configuration(ACL, "test").spec.access_control)
    async with callee(ca, acl=acl) as b, pair(ca, b.address) as (fast, grpc):
        assert (await same(fast, grpc, "POST", "echo", b"{}"))[0] == 200
        denied = await same(fast, grpc, "GET", "echo")
        assert denied[0] == 403
        assert _error(denied) == (
            "failed to invoke, id: appB, err: rpc error: code = PermissionDenied desc = access "
            "control policy has denied access to id: spiffe://public/ns/default/appA operation: "
            "echo verb: GET"
        )
        assert fast.client.fastpath is not None
        assert fast.client.fastpath.transport(b.address, B) == ALPN


async def test_dead_app_gives_the_app_channel_error(ca: TestCA) -> None:
    async with callee(ca) as b, pair(ca, b.address) as (fast, grpc):
        await b.app_runner.cleanup()  # the callee's app is gone
        answer = await same(fast, grpc, "POST", "echo", b"{}")
        assert answer[0] == 500
        assert _error(answer).startswith(
            "failed to invoke, id: appB, err: rpc error: code = Internal desc = "
            "error invoking app channel: "
        ), answer


def _slow_app(release: asyncio.Event) -> web.Application:
    """``GET /slow`` answers when ``release`` is set (the test sets it when it is done)."""

    async def slow(request: web.Request) -> web.Response:
        await asyncio.wait_for(release.wait(), 10)
        return web.Response(text="late")

    app = build()
    app.router.add_get("/slow", slow)
    return app


async def test_deadline_gives_the_same_timeout_and_cancels_the_call(ca: TestCA) -> None:
    release = asyncio.Event()
    async with (
        callee(ca, app=_slow_app(release)) as b,
        pair(ca, b.address, timeout_s=0.5) as (fast, grpc),
    ):
        answer = await same(fast, grpc, "GET", "slow")  # the fast call first, then 0.5 s more
        assert answer[0] == 500
        assert _error(answer) == (
            "failed to invoke, id: appB, err: connection error: Deadline exceeded (TimeoutError)"
        )
        assert isinstance(b.server, FastpathServer) and b.server.accepted[ALPN] == 1
        # The timed-out call was cancelled on its stream: its connection carries on.
        assert (await same(fast, grpc, "GET", "echo"))[0] == 200
        # One attempt, no retry logic: the connection stays, the caller's CANCEL frame stops
        # the callee's work well before the callee's own deadline (the caller's + 1 s).
        remote = fast.client.fastpath
        assert remote is not None
        with pytest.raises(TimeoutError, match="Deadline exceeded"):
            await remote.call(b.address, B, InvokeRequest("slow"))
        (conn,) = b.server.connections
        await _until(lambda: not conn.tasks, 0.5)
        # A caller that goes away (its task cancelled) cancels the stream too.
        task = asyncio.create_task(remote.call(b.address, B, InvokeRequest("slow")))
        await _until(lambda: bool(conn.tasks), 0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await _until(lambda: not conn.tasks, 0.5)
        assert b.server.connections == (conn,) and conn.served == 4
        assert b.server.accepted[ALPN] == 1
        assert (await remote.call(b.address, B, InvokeRequest("echo"))).status == 200
        release.set()  # the app's abandoned handlers end (aiohttp does not cancel them)


async def _until(check: Callable[[], bool], within_s: float) -> None:
    for _ in range(int(within_s / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    assert check()


async def test_callee_with_fastpath_off_gets_grpc(ca: TestCA) -> None:
    async with callee(ca, fastpath=False) as b, pair(ca, b.address) as (fast, grpc):
        assert (await same(fast, grpc, "POST", "echo", b"x"))[0] == 200
        assert fast.client.fastpath is not None
        assert fast.client.fastpath.transport(b.address, B) == "h2"
        assert (await same(fast, grpc, "POST", "echo", b"y"))[0] == 200


async def test_a_peer_choosing_h2_gets_grpc_on_the_same_connection(ca: TestCA) -> None:
    """The fast caller's connection, on which the callee picked ``h2``, carries its gRPC calls:
    one connection per caller, as with a gRPC-only caller."""
    async with callee(ca, offer_fastpath=False) as b, pair(ca, b.address) as (fast, grpc):
        for i in range(3):
            assert (await same(fast, grpc, "POST", "raw", b"%d" % i))[2] == b"%d" % i
        assert fast.client.fastpath is not None
        assert fast.client.fastpath.transport(b.address, B) == "h2"
        assert isinstance(b.server, FastpathServer)
        assert b.server.accepted == Counter({"h2": 2})


async def test_peer_id_is_checked_as_on_the_grpc_path(ca: TestCA) -> None:
    async with callee(ca, app_id="appX") as impostor, pair(ca, impostor.address) as (fast, grpc):
        answer = await same(fast, grpc, "GET", "echo")
        assert answer[0] == 500
        assert "unexpected SPIFFE ID: 'spiffe://public/ns/default/appX'" in _error(answer)
        assert fast.client.fastpath is not None  # refused: no connection kept for that peer
        assert fast.client.fastpath.transport(impostor.address, B) is None
    other = TestCA.create()  # a caller from another root: the handshake fails for both
    async with callee(ca) as b, pair(other, b.address) as (fast, grpc):
        answer = await same(fast, grpc, "GET", "echo")
        assert answer[0] == 500 and "connection error" in _error(answer)


async def _outcome(call: Awaitable[InvokeResponse]) -> tuple[str, object, str]:
    try:
        reply = await call
    except GRPCError as err:
        return "GRPCError", err.status, err.message or ""
    return "reply", reply.status, reply.body.decode()[:40]


async def test_both_remote_invokers_keep_one_contract(ca: TestCA) -> None:
    """One attempt through each ``RemoteInvoker`` (gRPC, fast path): the same replies and the
    same ``GRPCError`` status and message for a refusal and for a dead app."""
    acl = AccessControlList.from_spec(parse_configuration(ACL, "test").spec.access_control)
    async with callee(ca, acl=acl) as b:
        fast, _ = client(ca, fastpath=True)
        grpc, _ = client(ca, fastpath=False)
        try:
            seen: dict[str, list[tuple[str, object, str]]] = {}
            for name, remote in (("fast", fast.fastpath), ("grpc", grpc.grpc)):
                assert remote is not None
                calls = [
                    InvokeRequest("echo", "POST", body=b"ok"),
                    InvokeRequest("echo", "GET"),  # denied
                ]
                seen[name] = [await _outcome(remote.call(b.address, B, c)) for c in calls]
            await b.app_runner.cleanup()
            for name, remote in (("fast", fast.fastpath), ("grpc", grpc.grpc)):
                assert remote is not None
                req = InvokeRequest("echo", "POST", body=b"{}")
                seen[name].append(await _outcome(remote.call(b.address, B, req)))
        finally:
            fast.close()
            grpc.close()
    assert seen["fast"] == seen["grpc"]
    ok, denied, dead = seen["fast"]
    assert ok[:2] == ("reply", 200) and ok[2].startswith('{"app": "app", "method": "POST"')
    assert denied[:2] == ("GRPCError", Status.PERMISSION_DENIED)
    assert dead[:2] == ("GRPCError", Status.INTERNAL)
    assert dead[2].startswith("error invoking app channel: ")
