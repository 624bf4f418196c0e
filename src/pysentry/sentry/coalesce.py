"""One TLS record per burst of HTTP/2 frames: grpclib writes each frame as it makes it.

Answering one ``SignCertificate`` makes grpclib write three times in one event-loop step (the
response headers, the message, the trailers), and each write is a TLS record of its own and a
``send()`` of its own. :class:`CoalescingTransport` gathers the writes of one step and hands
them to the real transport once, from a ``call_soon`` callback: the same bytes in the same
order, as one record and one system call. ``close()`` sends what is pending first; ``abort()``
drops it, as the real transport would. Everything else goes to the real transport.
"""

from __future__ import annotations

import asyncio
from typing import Any

from grpclib.protocol import H2Protocol
from grpclib.server import Server


class CoalescingTransport:
    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._pending: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def _flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _CoalescingProtocol(H2Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        wrapped = CoalescingTransport(transport)  # type: ignore[arg-type]
        super().connection_made(wrapped)  # type: ignore[arg-type]


class CoalescingServer(Server):
    """A grpclib server whose connections write through a :class:`CoalescingTransport`."""

    def _protocol_factory(self) -> H2Protocol:
        plain = super()._protocol_factory()
        return _CoalescingProtocol(plain.handler, plain.config, plain.h2_config)
