"""Frames written in one loop iteration leave together (:mod:`.fastpath_writer`): answers still
match their calls whatever their sizes, a peer that stops reading holds calls back instead of
piling frames up, and a connection lost with frames unsent fails every call as before (real
mTLS on loopback, bounded loops)."""

from __future__ import annotations

import asyncio
import socket

import pytest
from grpclib.exceptions import StreamTerminatedError

from pysentry.security.anchors import StaticAnchors
from pysentry.sidecar import fastpath_protocol as fp
from pysentry.sidecar.fastpath_writer import JOIN_LIMIT
from pysentry.sidecar.invocation import InvokeRequest, InvokeResponse, Target
from pysentry.sidecar.mtls import Identity
from pysentry.testing import TestCA
from tests.integration.sidecar.fastmesh import callee, client, svid

B = Target("appB", "default")


@pytest.fixture
def ca() -> TestCA:
    return TestCA.create()


async def test_concurrent_calls_of_mixed_sizes_get_their_own_answers(ca: TestCA) -> None:
    """Small frames joined, bodies over the join limit and over one TLS record (16 KiB) handed
    on as they are, all in the same iterations: every call gets its own body back."""
    sizes = [0, 1, 1024, 16 << 10, JOIN_LIMIT - 100, JOIN_LIMIT + 1, 1 << 20, 7, (1 << 20) + 5, 512]
    async with callee(ca) as b:
        internal, _ = client(ca, fastpath=True)
        try:
            bodies = [bytes([i]) * size for i, size in enumerate(sizes * 3)]
            replies = await asyncio.wait_for(
                asyncio.gather(
                    *(
                        internal.call(b.address, B, InvokeRequest("raw", "POST", body=x))
                        for x in bodies
                    )
                ),
                30,
            )
            assert [r.body for r in replies] == bodies and {r.status for r in replies} == {200}
            assert internal.fastpath is not None
            conn = internal.fastpath.connection(b.address, B)
            assert conn is not None and conn.unsent == 0
        finally:
            internal.close()


async def test_a_peer_that_stops_reading_holds_calls_back(ca: TestCA) -> None:
    """A callee that never reads: the first calls fill the socket and TLS buffers, the
    transport pauses us, later calls wait for it instead of piling frames up, and every call
    ends at its deadline with grpclib's text."""
    anchors = StaticAnchors.from_pem(ca.anchors_pem())
    fake = Identity(svid(ca, "appB"), anchors, fastpath=True)
    release = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()  # never reads before the test ends
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=fake.server.listener)
    listener = server.sockets[0]
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)  # the accepted one's too
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    internal, _ = client(ca, fastpath=True, timeout_s=3.0)
    try:
        fast = internal.fastpath
        assert fast is not None
        body = b"x" * (2 << 20)

        def start(count: int) -> list[asyncio.Task[InvokeResponse]]:
            request = InvokeRequest("m", "POST", body=body)
            return [asyncio.create_task(fast.call(address, B, request)) for _ in range(count)]

        calls = start(4)  # fill the kernel's buffers and the TCP transport's
        conn = None
        for _ in range(100):
            conn = fast.connection(address, B)
            if conn is not None and conn.inflight == 4:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert conn is not None and not conn.closed
        calls += start(2)  # these stay in the TLS layer's buffer: it pauses us
        for _ in range(100):
            if conn.paused:
                break
            await asyncio.sleep(0.01)
        assert conn.paused and conn.unsent == 0
        later = start(4)
        await asyncio.sleep(0.1)
        # they wait for the transport (nothing piles up in the writer) until their deadline
        assert conn.paused and conn.unsent == 0 and not any(c.done() for c in later)
        results = await asyncio.wait_for(asyncio.gather(*calls, *later, return_exceptions=True), 10)
        assert [type(r) for r in results] == [TimeoutError] * 10
        assert {str(r) for r in results} == {"Deadline exceeded"}
    finally:
        release.set()
        internal.close()
        server.close()
        await server.wait_closed()


async def test_a_connection_lost_with_frames_unsent_fails_every_call_alike(ca: TestCA) -> None:
    async with callee(ca) as b:
        internal, _ = client(ca, fastpath=True)
        try:
            assert (await internal.call(b.address, B, InvokeRequest("raw", "POST"))).status == 200
            assert internal.fastpath is not None
            conn = internal.fastpath.connection(b.address, B)
            assert conn is not None
            calls = [
                asyncio.create_task(
                    internal.call(b.address, B, InvokeRequest("raw", "POST", body=b"%d" % i))
                )
                for i in range(5)
            ]
            await asyncio.sleep(0)  # the calls ran up to their write; the flush comes next
            assert conn.unsent > 5 * fp.HEADER_SIZE
            conn._fail()  # as a bad frame or a reset does: closed now, the calls failed
            results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)
            assert [type(r) for r in results] == [StreamTerminatedError] * 5
            assert {str(r) for r in results} == {"Connection lost"}
            assert conn.unsent == 0 and conn.closed
            reply = await internal.call(b.address, B, InvokeRequest("raw", "POST", body=b"again"))
            assert reply.body == b"again"  # the next call dials anew
        finally:
            internal.close()
