"""Sentry's plain HTTP server for /healthz and /metrics, over real loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from pysentry.sentry import httpserve
from pysentry.sentry.httpserve import PlainHttpServer, Reply

BODY = b'{"status": "ok"}'


@pytest.fixture
async def server() -> AsyncIterator[PlainHttpServer]:
    srv = PlainHttpServer({"/healthz": lambda: Reply(200, "application/json", BODY)})
    await srv.start("127.0.0.1", 0)
    try:
        yield srv
    finally:
        await srv.close()


async def _exchange(port: int, data: bytes, *, reads: int = 1) -> list[bytes]:
    """Send ``data``, then read ``reads`` whole responses (head + Content-Length body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        out = []
        for _ in range(reads):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            is_head = data.startswith(b"HEAD")
            body = b"" if is_head else await asyncio.wait_for(reader.readexactly(length), 5)
            out.append(head + body)
        return out
    finally:
        await _shut(writer)


async def _shut(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def _closed(reader: asyncio.StreamReader) -> bool:
    return await asyncio.wait_for(reader.read(), 5) == b""


def _status(response: bytes) -> bytes:
    return response.split(b"\r\n", 1)[0]


async def test_get_head_404_405(server: PlainHttpServer) -> None:
    [ok] = await _exchange(server.port, b"GET /healthz?x=1 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert _status(ok) == b"HTTP/1.1 200 OK"
    assert b"Content-Type: application/json\r\n" in ok
    assert ok.endswith(b"\r\n\r\n" + BODY)
    [head] = await _exchange(server.port, b"HEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
    assert _status(head) == b"HTTP/1.1 200 OK"
    assert f"Content-Length: {len(BODY)}".encode() in head and head.endswith(b"\r\n\r\n")
    [missing] = await _exchange(server.port, b"GET /nope HTTP/1.1\r\nHost: a\r\n\r\n")
    assert _status(missing) == b"HTTP/1.1 404 Not Found"
    [post] = await _exchange(server.port, b"POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert _status(post) == b"HTTP/1.1 405 Method Not Allowed"
    assert b"Allow: GET, HEAD\r\n" in post


async def test_keep_alive_and_close(server: PlainHttpServer) -> None:
    two = b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n" * 2
    first, second = await _exchange(server.port, two, reads=2)
    assert b"Connection: keep-alive" in first and _status(second) == b"HTTP/1.1 200 OK"
    for request in (
        b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET /healthz HTTP/1.0\r\n\r\n",
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(request)
        response = await asyncio.wait_for(reader.read(), 5)  # the server closes after one
        assert b"Connection: close" in response and response.endswith(BODY)
        await _shut(writer)


@pytest.mark.parametrize(
    "request_bytes",
    [b"hello\r\n\r\n", b"GET /healthz HTTP/2.0\r\n\r\n", b"GET /h\xff HTTP/1.1\r\n\r\n"],
)
async def test_bad_request_is_400_and_closed(server: PlainHttpServer, request_bytes: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request_bytes)
    response = await asyncio.wait_for(reader.read(), 5)
    assert _status(response) == b"HTTP/1.1 400 Bad Request"
    await _shut(writer)


async def test_oversized_head_is_431(server: PlainHttpServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * (httpserve.MAX_HEAD_BYTES + 10))
    response = await asyncio.wait_for(reader.read(), 5)
    assert _status(response) == b"HTTP/1.1 431 Request Header Fields Too Large"
    await _shut(writer)


async def test_slow_head_is_closed(
    server: PlainHttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(httpserve, "HEAD_TIMEOUT_S", 0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\n")  # never finished
    assert await _closed(reader)
    await _shut(writer)


async def test_close_drops_idle_connections_and_port_in_use() -> None:
    srv = PlainHttpServer({})
    await srv.start("127.0.0.1", 0)
    other = PlainHttpServer({})
    with pytest.raises(OSError):
        await other.start("127.0.0.1", srv.port)
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    writer.write(b"GET / HTTP/1.1\r\n\r\n")
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    await asyncio.wait_for(srv.close(), 5)
    await asyncio.wait_for(reader.read(), 5)  # the rest of the 404, then the end
    assert reader.at_eof()
    await _shut(writer)


async def test_a_failing_route_is_500_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> Reply:
        raise OSError("metrics file vanished")

    srv = PlainHttpServer({"/metrics": broken})
    await srv.start("127.0.0.1", 0)
    try:
        [response] = await _exchange(srv.port, b"GET /metrics HTTP/1.1\r\n\r\n")
        assert _status(response) == b"HTTP/1.1 500 Internal Server Error"
        assert "GET /metrics failed" in caplog.text and "metrics file vanished" in caplog.text
    finally:
        await srv.close()
