"""The fast path against a hostile or broken peer, and one call's deadline among others: the
callee's byte and stream limits per connection, grpclib handlers freed, bad input closing the
connection with one warning, a timeout that is not the deadline, bad server frames (real mTLS on
loopback, raw peers with valid SVIDs, bounded loops)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

import pytest
from aiohttp import web
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from pysentry.security.anchors import StaticAnchors
from pysentry.sidecar import fastpath_callee
from pysentry.sidecar import fastpath_codec as codec
from pysentry.sidecar import fastpath_protocol as fp
from pysentry.sidecar.fastpath_callee import ServerConnection
from pysentry.sidecar.fastpath_server import FastpathServer
from pysentry.sidecar.invocation import InvokeRequest, InvokeResponse, Target
from pysentry.sidecar.mtls import Identity
from pysentry.spiffe import SpiffeId
from pysentry.testing import TestCA
from tests.apps.http_app import build
from tests.integration.sidecar.fastmesh import Callee, callee, client, svid

B = Target("appB", "default")


@pytest.fixture
def ca() -> TestCA:
    return TestCA.create()


def _hold_app(seen: Counter[str]) -> tuple[web.Application, asyncio.Event]:
    """``POST /hold`` answers its body's size once the event is set; ``/sleep?s=`` sleeps."""
    hold = asyncio.Event()

    async def held(request: web.Request) -> web.Response:
        body = await request.read()
        await asyncio.wait_for(hold.wait(), 20)
        return web.Response(text=str(len(body)))

    async def sleep(request: web.Request) -> web.Response:
        seen[request.query["tag"]] += 1
        await asyncio.sleep(float(request.query["s"]))
        return web.Response(text=request.query["tag"])

    app = build()
    app.router.add_post("/hold", held)
    app.router.add_get("/sleep", sleep)
    return app, hold


async def _until(check: Callable[[], bool], within_s: float) -> None:
    for _ in range(int(within_s / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    assert check()


async def _raw(ca: TestCA, b: Callee) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw peer with a valid SVID (appA) that negotiated the fast path."""
    _, identity = client(ca, fastpath=True)
    host, port = b.address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port), ssl=identity.fast_clients.get())
    assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == fp.ALPN
    return reader, writer


def _request(stream: int, request: InvokeRequest) -> bytes:
    return b"".join(fp.request_frame(stream, 20_000, *codec.encode_request(request)))


async def _answers(reader: asyncio.StreamReader, count: int) -> list[fp.Frame]:
    frames = fp.FrameReader(1 << 20)
    out: list[fp.Frame] = []
    while len(out) < count:
        data = await asyncio.wait_for(reader.read(1 << 16), 10)
        assert data, f"connection closed after {len(out)} answers"
        out += [f for f in frames.feed(data) if isinstance(f, fp.Frame)]
    return out


def _server(b: Callee) -> FastpathServer:
    assert isinstance(b.server, FastpathServer)
    return b.server


async def _connection(b: Callee) -> ServerConnection:
    """The callee's one fast connection (it registers once the first bytes arrive)."""
    await _until(lambda: len(_server(b).connections) == 1, 2)
    return _server(b).connections[0]


async def test_a_peer_cannot_make_a_connection_hold_more_than_its_budget(ca: TestCA) -> None:
    """40 requests of 128 KiB that the app holds: the callee reads about its 1 MiB budget of
    them, stops reading, a legitimate call on another connection still completes, and once the
    app answers every one of the 40 is served."""
    seen: Counter[str] = Counter()
    app, hold = _hold_app(seen)
    count, size, budget = 40, 128 << 10, 1 << 20
    async with callee(ca, app=app) as b:
        server = _server(b)
        assert server.connection_budget == fp.connection_budget(fp.max_payload(512 << 10))
        server.connection_budget = budget
        reader, writer = await _raw(ca, b)
        internal, _ = client(ca, fastpath=True)
        try:
            big = InvokeRequest("hold", "POST", body=b"x" * size)
            writer.write(b"".join(_request(s, big) for s in range(1, count + 1)))
            conn = await _connection(b)
            await _until(lambda: conn.held >= budget, 5)
            await asyncio.sleep(0.3)  # what a careless server would read meanwhile
            frame = size + 100
            assert budget <= conn.peak_held <= budget + frame + (256 << 10), conn.peak_held
            assert len(conn.tasks) < count  # not read: waiting in TCP
            reply = await internal.call(b.address, B, InvokeRequest("sleep", query="s=0&tag=ok"))
            assert (reply.status, reply.body) == (200, b"ok")
            hold.set()
            answers = await _answers(reader, count)
            assert sorted(f.stream for f in answers) == list(range(1, count + 1))
            assert {f.kind for f in answers} == {fp.RESPONSE}
            assert codec.decode_response(answers[0].payload).body == str(size).encode()
            await _until(lambda: conn.held == 0, 2)
            assert conn.served == count and conn.peak_held <= budget + frame + (256 << 10)
        finally:
            hold.set()
            writer.close()
            internal.close()


async def test_at_most_100_streams_run_per_connection(ca: TestCA) -> None:
    seen: Counter[str] = Counter()
    app, hold = _hold_app(seen)
    async with callee(ca, app=app) as b:
        reader, writer = await _raw(ca, b)
        try:
            small = InvokeRequest("hold", "POST", body=b"y")
            writer.write(b"".join(_request(s, small) for s in range(1, 151)))
            conn = await _connection(b)
            await _until(lambda: len(conn.tasks) == 100, 5)
            await asyncio.sleep(0.2)
            assert len(conn.tasks) == fastpath_callee.MAX_CONCURRENT_STREAMS == 100
            hold.set()
            assert len(await _answers(reader, 150)) == 150
        finally:
            hold.set()
            writer.close()


async def test_fast_connections_free_their_grpc_handler(ca: TestCA) -> None:
    async with callee(ca) as b:
        server = _server(b)
        before = len(server._handlers)  # grpclib internals: one handler per h2 connection
        for stream in range(1, 6):
            reader, writer = await _raw(ca, b)
            writer.write(_request(stream, InvokeRequest("echo")))
            assert (await _answers(reader, 1))[0].kind == fp.RESPONSE
            writer.close()
            await writer.wait_closed()
        await _until(lambda: not server.connections, 2)
        assert server.accepted[fp.ALPN] == 5
        assert len(server._handlers) == before


@pytest.mark.parametrize("fastpath", [True, False], ids=["fastpath", "grpc"])
async def test_one_call_timing_out_leaves_the_others_on_its_connection(
    ca: TestCA, fastpath: bool
) -> None:
    """A call past its deadline fails alone: a concurrent longer call on the same connection
    succeeds, runs once (no retry), and the connection stays."""
    seen: Counter[str] = Counter()
    app, _ = _hold_app(seen)
    async with callee(ca, app=app) as b:
        internal, _ = client(ca, fastpath=fastpath, timeout_s=5.0)
        try:
            echo = await internal.invoke(lambda: b.address, B, InvokeRequest("echo"))
            assert echo.status == 200
            long = asyncio.create_task(
                internal.invoke(lambda: b.address, B, InvokeRequest("sleep", query="s=3&tag=L"))
            )
            await _until(lambda: seen["L"] == 1, 2)
            remote = internal.fastpath if fastpath else internal.grpc
            assert remote is not None
            remote._timeout_s = 0.5  # the next call's deadline only (read when a call starts)
            short = InvokeRequest("sleep", query="s=3&tag=S")
            with pytest.raises(Exception, match="Deadline exceeded"):
                await internal.invoke(lambda: b.address, B, short)
            reply = await asyncio.wait_for(long, 5)
            assert (reply.status, reply.body) == (200, b"L")
            assert seen == Counter({"L": 1, "S": 1})
            assert _server(b).accepted == Counter({fp.ALPN if fastpath else "h2": 1})
        finally:
            internal.close()


@pytest.mark.parametrize(
    "payload", [b"\x00\x01", b"\x00\x00\x00\x00\xff"], ids=["too-short", "bad-protobuf"]
)
async def test_bad_requests_close_the_connection_with_one_warning(
    ca: TestCA,
    payload: bytes,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fastpath_callee, "_warned", [-fastpath_callee.WARN_EVERY_S, 0])
    caplog.set_level(logging.INFO, logger="pysentry.sidecar.fastpath_server")
    async with callee(ca) as b:
        for _ in range(2):  # two peers, five bad frames each
            reader, writer = await _raw(ca, b)
            frames = (fp.header(fp.REQUEST, s, len(payload)) + payload for s in range(1, 6))
            writer.write(b"".join(frames))
            assert await asyncio.wait_for(reader.read(), 3) == b""  # closed, nothing answered
            writer.close()
        records = [r for r in caplog.records if r.name == "pysentry.sidecar.fastpath_server"]
        assert [(r.levelno, r.exc_info) for r in records] == [(logging.WARNING, None)]
        closing = "Closing the fast-path connection from spiffe://public/ns/default/appA"
        assert records[0].getMessage().startswith(f"{closing}: bad REQUEST on stream 1: ")


async def test_a_timeout_inside_the_app_call_is_not_the_deadline(ca: TestCA) -> None:
    async def times_out(peer: SpiffeId | None, request: InvokeRequest) -> InvokeResponse:
        raise TimeoutError

    async with callee(ca) as b:
        _server(b)._handle = times_out  # the servicer's handle, as if its app call timed out
        internal, _ = client(ca, fastpath=True)
        try:
            assert internal.fastpath is not None
            with pytest.raises(GRPCError) as err:
                await internal.fastpath.call(b.address, B, InvokeRequest("echo"))
            assert (err.value.status, err.value.message) == (
                Status.UNKNOWN,
                "Internal Server Error",
            )
        finally:
            internal.close()


@pytest.mark.parametrize(
    "answer",
    [fp.header(fp.ERROR, 1, 0), fp.cancel_frame(1), _request(1, InvokeRequest("echo"))],
    ids=["empty-error", "cancel", "request"],
)
async def test_a_server_breaking_the_protocol_fails_the_calls(ca: TestCA, answer: bytes) -> None:
    anchors = StaticAnchors.from_pem(ca.anchors_pem())
    fake = Identity(svid(ca, "appB"), anchors, fastpath=True)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(fp.HEADER_SIZE)  # a request arrived
        writer.write(answer)
        await reader.read()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=fake.server.listener)
    address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    internal, _ = client(ca, fastpath=True, timeout_s=3.0)
    try:
        assert internal.fastpath is not None
        with pytest.raises(StreamTerminatedError, match="Connection lost"):
            await internal.fastpath.call(address, B, InvokeRequest("echo"))
        conn = internal.fastpath.connection(address, B)
        assert conn is not None and conn.closed and not conn.usable
    finally:
        internal.close()
        server.close()
        await server.wait_closed()


def test_server_connection_budget_defaults_to_the_body_budget() -> None:
    async def never(peer: SpiffeId | None, request: InvokeRequest) -> InvokeResponse:
        raise AssertionError

    conn = ServerConnection(never, None, max_payload=fp.max_payload(4 << 20))
    assert conn.budget == 32 << 20 and conn.held == 0


async def test_the_callee_ends_a_call_at_the_callers_deadline_plus_grace(ca: TestCA) -> None:
    """A peer that never sends CANCEL: the callee answers DEADLINE_EXCEEDED at the deadline it
    was given + 1 s, and the connection serves the next call."""
    seen: Counter[str] = Counter()
    app, _ = _hold_app(seen)
    async with callee(ca, app=app) as b:
        reader, writer = await _raw(ca, b)
        try:
            late = InvokeRequest("sleep", query="s=8&tag=late")
            loop = asyncio.get_running_loop()
            started = loop.time()
            writer.write(b"".join(fp.request_frame(1, 100, *codec.encode_request(late))))
            (answer,) = await _answers(reader, 1)
            waited = loop.time() - started
            assert (answer.kind, answer.stream) == (fp.ERROR, 1)
            assert fp.split_error(answer.payload) == (Status.DEADLINE_EXCEEDED.value, "")
            assert 1.0 <= waited < 4, waited
            writer.write(_request(2, InvokeRequest("sleep", query="s=0&tag=next")))
            (after,) = await _answers(reader, 1)
            assert (
                after.kind == fp.RESPONSE and codec.decode_response(after.payload).body == b"next"
            )
            assert seen == Counter({"late": 1, "next": 1})
        finally:
            writer.close()
