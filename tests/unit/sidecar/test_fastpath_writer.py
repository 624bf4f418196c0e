"""FrameWriter on a real loopback TCP connection: the first write of a loop iteration goes at
once, the rest of that iteration's as one transport write, in order; large bodies are not
copied; dropped or closing means nothing sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from pysentry.sidecar.fastpath_writer import JOIN_LIMIT, FrameWriter


class Counting(asyncio.Transport):
    """The real transport, with each write call recorded (what it was given) before it goes on."""

    def __init__(self, real: asyncio.Transport) -> None:
        super().__init__()
        self.real = real
        self.calls: list[list[bytes]] = []

    def write(self, data: Any) -> None:
        self.calls.append([data])
        self.real.write(data)

    def writelines(self, list_of_data: Iterable[Any]) -> None:
        parts = list(list_of_data)
        self.calls.append(parts)
        self.real.writelines(parts)

    def is_closing(self) -> bool:
        return self.real.is_closing()

    def close(self) -> None:
        self.real.close()


@asynccontextmanager
async def _pair() -> AsyncIterator[tuple[Counting, asyncio.Queue[bytes]]]:
    got: asyncio.Queue[bytes] = asyncio.Queue()
    served: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.append(writer)
        while True:
            data = await reader.read(1 << 20)
            if not data:
                break
            got.put_nowait(data)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    counting = Counting(transport)
    try:
        yield counting, got
    finally:
        transport.close()
        for writer in served:
            writer.close()
            await writer.wait_closed()
        server.close()
        await server.wait_closed()


async def _received(got: asyncio.Queue[bytes], size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += await asyncio.wait_for(got.get(), 5)
    return data


async def test_the_first_write_goes_now_the_rest_of_the_iteration_as_one_write() -> None:
    async with _pair() as (transport, got):
        writer = FrameWriter(transport, asyncio.get_running_loop())
        frames = [bytes([i]) * (i + 1) for i in range(10)]
        for frame in frames:
            writer.write(frame[:1], frame[1:])
        # the first frame left at once (the peer can start on it), joined into one buffer
        assert transport.calls == [[frames[0]]]
        assert writer.pending == sum(map(len, frames[1:]))
        await asyncio.sleep(0)  # the flush scheduled by the first write
        assert writer.pending == 0
        assert transport.calls == [[frames[0]], [b"".join(frames[1:])]]
        assert await _received(got, sum(map(len, frames))) == b"".join(frames)
        writer.write(b"next")  # a later iteration: goes now again
        assert transport.calls[2:] == [[b"next"]]
        await asyncio.sleep(0)
        assert transport.calls[3:] == []


async def test_a_large_body_is_handed_on_uncopied_between_joined_small_parts() -> None:
    async with _pair() as (transport, got):
        writer = FrameWriter(transport, asyncio.get_running_loop())
        body = bytes(range(256)) * (JOIN_LIMIT // 128)  # 2 x JOIN_LIMIT
        writer.write(b"first")
        writer.write(b"head1", b"msg1", body)
        writer.write(b"head2", b"msg2", b"small")
        await asyncio.sleep(0)
        first, call = transport.calls
        assert first == [b"first"]
        assert call[0] == b"head1msg1" and call[1] is body and call[2] == b"head2msg2small"
        expected = b"firsthead1msg1" + body + b"head2msg2small"
        assert await _received(got, len(expected)) == expected


async def test_dropped_or_closing_sends_nothing() -> None:
    async with _pair() as (transport, _):
        writer = FrameWriter(transport, asyncio.get_running_loop())
        writer.write(b"sent")
        writer.write(b"lost")
        writer.drop()  # the connection was lost: the calls fail, their frames go nowhere
        assert writer.pending == 0
        await asyncio.sleep(0)
        assert transport.calls == [[b"sent"]]
        transport.close()
        writer.write(b"late")
        writer.write(b"later")
        await asyncio.sleep(0)
        assert transport.calls == [[b"sent"]] and writer.pending == 0


async def test_flush_sends_now_and_leaves_nothing_for_the_scheduled_one() -> None:
    async with _pair() as (transport, got):
        writer = FrameWriter(transport, asyncio.get_running_loop())
        writer.write(b"request")
        writer.write(b"cancel-frame")
        writer.flush()  # as before a close
        assert transport.calls == [[b"request"], [b"cancel-frame"]]
        await asyncio.sleep(0)
        assert transport.calls == [[b"request"], [b"cancel-frame"]]
        assert await _received(got, 19) == b"requestcancel-frame"
