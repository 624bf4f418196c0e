"""CoalescingTransport: the writes of one event-loop step go out as one write, in order."""

from __future__ import annotations

import asyncio
import socket

from pysentry.sentry.coalesce import CoalescingTransport


class Recording(asyncio.Transport):
    """Records each write it is handed (what the TLS layer would make one record of)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


async def test_one_step_of_writes_is_one_write() -> None:
    inner = Recording()
    outer = CoalescingTransport(inner)
    outer.write(b"headers")
    outer.write(b"")
    outer.write(memoryview(b"data"))
    outer.write(b"trailers")
    assert inner.writes == []
    await asyncio.sleep(0)
    assert inner.writes == [b"headersdatatrailers"]
    outer.write(b"next")
    await asyncio.sleep(0)
    assert inner.writes == [b"headersdatatrailers", b"next"]


async def test_close_sends_what_is_pending_and_abort_drops_it() -> None:
    inner = Recording()
    outer = CoalescingTransport(inner)
    outer.write(b"last words")
    outer.close()
    assert inner.writes == [b"last words"] and inner.closed
    await asyncio.sleep(0)
    assert inner.writes == [b"last words"]

    inner = Recording()
    outer = CoalescingTransport(inner)
    outer.write(b"never sent")
    outer.abort()
    await asyncio.sleep(0)
    assert inner.writes == [] and inner.closed


async def test_bytes_reach_the_peer_in_order_over_a_real_socket() -> None:
    left, right = socket.socketpair()
    _, writer = await asyncio.open_connection(sock=left)
    reader, peer = await asyncio.open_connection(sock=right)
    outer = CoalescingTransport(writer.transport)  # type: ignore[arg-type]
    assert outer.get_extra_info("socket") is not None
    for i in range(100):
        outer.write(b"%03d," % i)
    outer.close()
    received = await asyncio.wait_for(reader.read(), timeout=5)
    assert received == b"".join(b"%03d," % i for i in range(100))
    peer.close()
