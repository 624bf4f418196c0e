"""The fast path under load: many concurrent calls on one connection, reconnection, certificate
rotation mid-load, and frames over the limit (real mTLS on loopback, bounded loops)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.serialization import Encoding
from grpclib.exceptions import StreamTerminatedError

from pysentry.security.identity import X509Svid
from pysentry.sidecar import fastpath_callee
from pysentry.sidecar import fastpath_protocol as fp
from pysentry.sidecar.fastpath_protocol import ALPN
from pysentry.sidecar.fastpath_server import FastpathServer
from pysentry.sidecar.invocation import InvocationError, InvokeRequest, Target
from pysentry.testing import TestCA
from tests.apps.http_app import build
from tests.integration.sidecar.fastmesh import callee, client, svid

B = Target("appB", "default")
GATE = 50


@pytest.fixture
def ca() -> TestCA:
    return TestCA.create()


def _gated_app() -> web.Application:
    """``/gate`` answers only once GATE calls are waiting in it: serialized calls would hang."""
    arrived: list[int] = []
    opened = asyncio.Event()

    async def gate(request: web.Request) -> web.Response:
        arrived.append(1)
        if len(arrived) >= GATE:
            opened.set()
        await asyncio.wait_for(opened.wait(), 10)
        return web.Response(body=await request.read())

    app = build()
    app.router.add_post("/gate", gate)
    return app


async def test_many_concurrent_calls_share_one_connection(ca: TestCA) -> None:
    async with callee(ca, app=_gated_app()) as b:
        internal, _ = client(ca, fastpath=True)
        try:
            bodies = [f"call-{i}".encode() * (i + 1) for i in range(GATE * 4)]
            replies = await asyncio.gather(
                *(
                    internal.invoke(lambda: b.address, B, InvokeRequest("gate", "POST", body=x))
                    for x in bodies
                )
            )
        finally:
            internal.close()
        assert [r.body for r in replies] == bodies and {r.status for r in replies} == {200}
        assert isinstance(b.server, FastpathServer)
        assert b.server.accepted == Counter({ALPN: 1})


async def test_a_lost_connection_is_redialled(ca: TestCA) -> None:
    async with callee(ca) as b:
        internal, _ = client(ca, fastpath=True)
        try:
            assert (
                await internal.invoke(lambda: b.address, B, InvokeRequest("echo"))
            ).status == 200
            assert isinstance(b.server, FastpathServer)
            for conn in b.server.connections:
                conn.close()  # the callee drops the connection
            await asyncio.sleep(0.05)
            assert (
                await internal.invoke(lambda: b.address, B, InvokeRequest("echo"))
            ).status == 200
        finally:
            internal.close()
        assert b.server.accepted == Counter({ALPN: 2})


async def test_calls_in_flight_on_a_lost_connection_fail_as_on_grpc(ca: TestCA) -> None:
    """One attempt each (no retry): every call in flight gets grpclib's "Connection lost"."""
    app, hold = _held_app()
    async with callee(ca, app=app) as b:
        internal, _ = client(ca, fastpath=True)
        try:
            calls = [
                asyncio.create_task(internal.call(b.address, B, InvokeRequest("wait")))
                for _ in range(5)
            ]
            assert isinstance(b.server, FastpathServer)
            for _ in range(200):
                if sum(len(c.tasks) for c in b.server.connections) == 5:
                    break
                await asyncio.sleep(0.01)
            (conn,) = b.server.connections
            assert len(conn.tasks) == 5
            conn.close()
            results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)
            assert [type(r) for r in results] == [StreamTerminatedError] * 5
            assert {str(r) for r in results} == {"Connection lost"}
            reply = await internal.invoke(lambda: b.address, B, InvokeRequest("echo"))
            assert reply.status == 200  # and the next call dials anew
        finally:
            hold.set()
            internal.close()


async def test_server_close_ends_calls_in_flight(ca: TestCA) -> None:
    """Shutdown: ``close`` cancels the fast-path calls in flight (as grpclib's), and
    ``wait_closed`` returns once they have ended."""
    app, hold = _held_app()
    async with callee(ca, app=app) as b:
        internal, _ = client(ca, fastpath=True)
        try:
            call = asyncio.create_task(internal.call(b.address, B, InvokeRequest("wait")))
            assert isinstance(b.server, FastpathServer)
            for _ in range(200):
                if any(c.tasks for c in b.server.connections):
                    break
                await asyncio.sleep(0.01)
            (conn,) = b.server.connections
            (task,) = conn.tasks.values()
            b.server.close()
            await asyncio.wait_for(b.server.wait_closed(), 5)
            assert task.cancelled()
            with pytest.raises(StreamTerminatedError, match="Connection lost"):
                await asyncio.wait_for(call, 5)
        finally:
            hold.set()
            internal.close()


def _held_app() -> tuple[web.Application, asyncio.Event]:
    """``GET /wait`` answers once the event is set (the app's handler outlives its caller)."""
    hold = asyncio.Event()

    async def wait(request: web.Request) -> web.Response:
        await asyncio.wait_for(hold.wait(), 10)
        return web.Response(text="released")

    app = build()
    app.router.add_get("/wait", wait)
    return app, hold


async def test_a_connection_over_its_stream_limit_waits(
    ca: TestCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the stream limit the callee stops reading: later calls wait, then all succeed."""
    monkeypatch.setattr(fastpath_callee, "MAX_CONCURRENT_STREAMS", 5)
    app, hold = _held_app()
    async with callee(ca, app=app) as b:
        internal, _ = client(ca, fastpath=True)
        try:
            calls = [
                asyncio.create_task(internal.call(b.address, B, InvokeRequest("wait")))
                for _ in range(8)
            ]
            assert isinstance(b.server, FastpathServer)
            for _ in range(200):
                if sum(len(c.tasks) for c in b.server.connections) == 5:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
            (conn,) = b.server.connections
            assert len(conn.tasks) == 5  # the other 3 are not read yet
            hold.set()
            replies = await asyncio.wait_for(asyncio.gather(*calls), 10)
            assert [r.body for r in replies] == [b"released"] * 8
            assert conn.served == 8
        finally:
            hold.set()
            internal.close()


def _der(svid: X509Svid) -> bytes:
    return svid.leaf.public_bytes(Encoding.DER)


async def test_rotation_under_load_fails_no_call(ca: TestCA) -> None:
    """Both sides get new SVIDs while calls are in flight; the caller's connection then ages out:
    the calls on the old connection finish, the new connection presents and checks the new
    certificates on both sides, and not one call fails."""
    now = [0.0]
    workers, calls_each = 8, 40
    async with callee(ca) as b:
        internal, identity = client(
            ca, fastpath=True, max_connection_age=timedelta(seconds=60), clock=lambda: now[0]
        )
        done: list[int] = []
        rotated = asyncio.Event()

        async def worker(w: int) -> None:
            for i in range(calls_each):
                body = f"{w}-{i}".encode()
                req = InvokeRequest("raw", "POST", body=body)
                reply = await internal.call(b.address, B, req)  # one attempt: no retry
                assert (reply.status, reply.body) == (200, body)
                done.append(1)
                if len(done) == workers * calls_each // 3 and not rotated.is_set():
                    b.identity.rotate(svid(ca, "appB"))  # new handshakes: the new server SVID
                    identity.rotate(svid(ca, "appA"))  # new connections: the new client SVID
                    now[0] = 61.0  # the connection is now too old: recycled on the next call
                    rotated.set()

        try:
            await asyncio.wait_for(asyncio.gather(*(worker(w) for w in range(workers))), 30)
            assert len(done) == workers * calls_each and rotated.is_set()
            assert internal.recycled == 1
            assert isinstance(b.server, FastpathServer)
            assert b.server.accepted == Counter({ALPN: 2})
            assert internal.fastpath is not None
            conn = internal.fastpath.connection(b.address, B)
            assert conn is not None and conn.ssl_object is not None
            assert conn.ssl_object.getpeercert(binary_form=True) == _der(b.identity.current())
            (served,) = b.server.connections  # the old one closed once its calls were done
            assert served.ssl_object is not None
            assert served.ssl_object.getpeercert(binary_form=True) == _der(identity.current())
        finally:
            internal.close()


async def test_frames_over_the_limit_fail_alone(ca: TestCA) -> None:
    """A request over the callee's limit and a response over the caller's fail with gRPC's
    RESOURCE_EXHAUSTED text; the connection carries on."""
    limit = 64 << 10
    async with callee(ca, frame_limit=limit) as b:
        internal, _ = client(ca, fastpath=True, frame_limit=limit, response_limit=limit)
        try:
            big = InvokeRequest("raw", "POST", body=b"x" * (limit + 1))
            with pytest.raises(InvocationError) as err:
                await internal.invoke(lambda: b.address, B, big)
            assert err.value.status == 500
            assert str(err.value).startswith(
                "rpc error: code = ResourceExhausted desc = grpc: received message larger than "
                "max ("
            ) and str(err.value).endswith(f" vs. {limit})")
            with pytest.raises(InvocationError, match=f"larger than max .* vs. {limit}"):
                await internal.invoke(lambda: b.address, B, InvokeRequest("big", query="n=70000"))
            ok = await internal.invoke(lambda: b.address, B, InvokeRequest("big", query="n=6000"))
            assert ok.body == b"x" * 6000
        finally:
            internal.close()
        assert isinstance(b.server, FastpathServer)
        assert b.server.accepted == Counter({ALPN: 1})


@pytest.mark.parametrize(
    "garbage",
    [fp.header(9, 1, 0), fp.header(fp.RESPONSE, 1, 2) + b"no", fp.header(fp.REQUEST, 0, 0)],
)
async def test_a_client_breaking_the_protocol_is_disconnected(ca: TestCA, garbage: bytes) -> None:
    async with callee(ca) as b:
        _, identity = client(ca, fastpath=True)
        host, port = b.address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(
            host, int(port), ssl=identity.fast_clients.get()
        )
        try:
            assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == ALPN
            writer.write(garbage)
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the callee
        finally:
            writer.close()
