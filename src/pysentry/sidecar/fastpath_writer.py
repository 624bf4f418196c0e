"""Frames written in one event-loop iteration leave a ``pysentry-invoke/2`` connection together.

Every ``write`` on a TLS transport is an ``SSL_write`` per buffer (one TLS record each: a
REQUEST frame was three) and a ``send`` to the kernel, which on loopback also runs the
receiver's TCP input and wakes it. With many calls in flight on one connection (the HTTP API's
handlers resume in the same iteration, as do the callee's answered calls), :class:`FrameWriter`
sends the first frame of an iteration at once (as one buffer: the peer can start on it, a lone
call waits for nothing) and keeps the frames written after it in that iteration, handing them to
the transport as one buffer from a callback the first one scheduled: one record (or as few as
16 KiB records allow) and one ``send`` for all of them. Holding back the first frame too saved a
little more CPU but lost throughput when the peer had a core to itself (it waited for the whole
batch). Frames leave in the order they were written. Above :data:`JOIN_LIMIT` bytes pending the
parts go to the transport as they are (no copy of a large body), still in one ``writelines``.
:meth:`FrameWriter.flush` sends what is pending now (before a close); :meth:`FrameWriter.drop`
forgets it (the connection is lost: the calls fail as they did before).
"""

from __future__ import annotations

import asyncio

#: Pending bytes up to which the parts are joined into one buffer (one ``SSL_write``).
JOIN_LIMIT = 64 << 10


class FrameWriter:
    """The first write of a loop iteration goes at once, the rest of it as one transport write."""

    __slots__ = ("_loop", "_open", "_parts", "_size", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._open = False  # a write went out in this iteration; the flush is scheduled
        self._parts: list[bytes] = []
        self._size = 0

    @property
    def pending(self) -> int:
        """Bytes written and not yet handed to the transport."""
        return self._size

    def write(self, *parts: bytes) -> None:
        if not self._open:
            self._open = True
            self._loop.call_soon(self.flush)
            if not self._transport.is_closing():
                self._send(list(parts), sum(map(len, parts)))
            return
        self._parts.extend(parts)
        for part in parts:
            self._size += len(part)

    def flush(self) -> None:
        self._open = False
        parts = self._parts
        if not parts:
            return
        size = self._size
        self._parts = []
        self._size = 0
        if not self._transport.is_closing():
            self._send(parts, size)

    def _send(self, parts: list[bytes], size: int) -> None:
        transport = self._transport
        if len(parts) == 1:
            transport.write(parts[0])
        elif size <= JOIN_LIMIT:
            transport.write(b"".join(parts))
        else:
            transport.writelines(_runs(parts))

    def drop(self) -> None:
        self._parts = []
        self._size = 0


def _runs(parts: list[bytes]) -> list[bytes]:
    """``parts`` with each run of small ones joined, the large ones left as they are."""
    out: list[bytes] = []
    run: list[bytes] = []
    for part in parts:
        if len(part) < JOIN_LIMIT:
            run.append(part)
            continue
        if run:
            out.append(b"".join(run))
            run = []
        out.append(part)
    if run:
        out.append(b"".join(run))
    return out
