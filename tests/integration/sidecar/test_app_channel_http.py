"""The app channel's own HTTP/1.1 client against raw apps on loopback: the request bytes, every
response framing, connection reuse, and the failure texts (those aiohttp's client gave, which
this client replaced: the same tests passed against it)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from pysentry.errors import PysentryError
from pysentry.sidecar.app_channel import HttpAppChannel
from pysentry.sidecar.invocation import InvokeRequest

#: (request bytes seen so far, the connection's index) -> bytes to send back, or None to wait;
#: b"" closes the connection.
Script = Callable[[bytes, int], bytes | None]


class _App(asyncio.Protocol):
    def __init__(self, script: Script, seen: list[bytes], conns: list[_App]) -> None:
        self._script = script
        self._seen = seen
        self._index = len(conns)
        conns.append(self)
        self._buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self._buf += data
        answer = self._script(self._buf, self._index)
        if answer is None:
            return
        self._seen.append(self._buf)
        self._buf = b""
        if answer:
            self.transport.write(answer)
        else:
            self.transport.close()


@asynccontextmanager
async def app(
    script: Script, **kwargs: object
) -> AsyncIterator[tuple[HttpAppChannel, list[bytes], list[_App]]]:
    seen: list[bytes] = []
    conns: list[_App] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _App(script, seen, conns), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    channel = HttpAppChannel(port, **kwargs)  # type: ignore[arg-type]
    try:
        yield channel, seen, conns
    finally:
        await channel.close()
        server.close()


def whole(answer: bytes) -> Script:
    """``answer`` to every complete request (head, then Content-Length bytes of body)."""

    def script(buf: bytes, index: int) -> bytes | None:
        head, sep, body = buf.partition(b"\r\n\r\n")
        if not sep:
            return None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length" and len(body) < int(value):
                return None
        return answer

    return script


POST = InvokeRequest(
    "a b/c", "POST", "x=1", "text/plain", (("x-h", "1"), ("content-length", "2")), b"hi"
)


async def test_the_request_bytes_and_a_content_length_response() -> None:
    answer = b"HTTP/1.1 201 Created\r\nContent-Type: text/x\r\nX-A: 1\r\nx-a: 2\r\nDate: d\r\n"
    answer += b"Content-Length: 3\r\n\r\nabc"
    async with app(whole(answer), app_api_token="tok") as (channel, seen, _):
        port = channel.base_url.rsplit(":", 1)[1]
        got = await channel.call(POST)
        assert seen == [
            b"POST /a%20b/c?x=1 HTTP/1.1\r\nHost: 127.0.0.1:" + port.encode() + b"\r\n"
            b"x-h: 1\r\nContent-Type: text/plain\r\ndapr-api-token: tok\r\n"
            b"Content-Length: 2\r\n\r\nhi"
        ]
        assert (got.status, got.content_type, got.body) == (201, "text/x", b"abc")
        assert got.headers == (("x-a", "1"), ("x-a", "2"), ("content-length", "3"))


@pytest.mark.parametrize(
    ("verb", "body", "length"),
    [("GET", b"", None), ("HEAD", b"", None), ("POST", b"", b"0"), ("DELETE", b"zz", b"2")],
)
async def test_content_length_is_sent_when_aiohttp_sent_it(
    verb: str, body: bytes, length: bytes | None
) -> None:
    async with app(whole(b"HTTP/1.1 204 No Content\r\n\r\n")) as (channel, seen, _):
        got = await channel.call(InvokeRequest("m", verb, body=body))
        assert (got.status, got.body) == (204, b"")
        sent = [ln for ln in seen[0].split(b"\r\n") if ln.lower().startswith(b"content-length")]
        assert sent == ([] if length is None else [b"Content-Length: " + length])


async def test_chunked_interim_and_no_body_responses_and_reuse() -> None:
    answers = [
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n10\r\n" + b"y" * 16 + b"\r\n0\r\nTrailer: t\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",  # to a HEAD: no body follows
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz",
    ]
    calls = iter(answers)
    async with app(lambda buf, _: next(calls) if buf.endswith(b"\r\n\r\n") else None) as (
        channel,
        seen,
        conns,
    ):
        first = await channel.call(InvokeRequest("m"))
        assert (first.status, first.body) == (200, b"abc" + b"y" * 16)
        assert (await channel.call(InvokeRequest("m"))).status == 304
        assert (await channel.call(InvokeRequest("m", "HEAD"))).body == b""
        assert (await channel.call(InvokeRequest("m"))).body == b"z"
        assert len(conns) == 1 and len(seen) == 4  # one kept-alive connection


async def test_a_close_delimited_body_and_connection_close() -> None:
    def script(buf: bytes, index: int) -> bytes | None:
        if not buf.endswith(b"\r\n\r\n"):
            return None
        if index == 0:
            return b"HTTP/1.0 200 OK\r\n\r\nuntil the end"
        return b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"

    async with app(script) as (channel, _, conns):
        closing = asyncio.get_running_loop().call_later(0.2, lambda: conns[0].transport.close())  # type: ignore[union-attr]
        try:
            assert (await channel.call(InvokeRequest("m"))).body == b"until the end"
        finally:
            closing.cancel()
        assert (await channel.call(InvokeRequest("m"))).body == b"ok"
        assert (await channel.call(InvokeRequest("m"))).body == b"ok"
        assert len(conns) == 3  # neither connection could be reused


async def test_an_idempotent_call_is_retried_once_on_a_lost_connection_a_post_is_not() -> None:
    def script(buf: bytes, index: int) -> bytes | None:
        if not buf.endswith(b"\r\n\r\n") and b"Content-Length: 2\r\n\r\nhi" not in buf:
            return None
        if index == 0 or buf.startswith(b"POST"):
            return b""
        return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async with app(script) as (channel, _, conns):
        assert (await channel.call(InvokeRequest("m", "PUT"))).body == b"ok"
        assert len(conns) == 2
        with pytest.raises(PysentryError) as err:
            await channel.call(POST)
        assert str(err.value) == "error invoking app channel: Server disconnected"
        assert len(conns) == 2  # not retried


async def test_a_body_cut_short_and_a_dead_port_and_a_timeout() -> None:
    short = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"

    def script(buf: bytes, index: int) -> bytes | None:
        if not buf.endswith(b"\r\n\r\n"):
            return None
        if b"/slow" in buf:
            return None if index == 0 else b""
        return short

    async with app(script, timeout_s=0.3) as (channel, _, conns):
        cut = asyncio.get_running_loop().call_later(0.1, lambda: conns[0].transport.close())  # type: ignore[union-attr]
        with pytest.raises(PysentryError) as err:
            await channel.call(InvokeRequest("m"))
        cut.cancel()
        assert str(err.value) == (
            "error invoking app channel: Response payload is not completed: "
            "<ContentLengthError: 400, message='Not enough data to satisfy content length "
            "header (received 3 of 10 bytes).'>"
        )

    async with app(lambda buf, _: None, timeout_s=0.3) as (channel, _, _conns):
        with pytest.raises(PysentryError) as err:
            await channel.call(InvokeRequest("slow"))
        assert str(err.value) == "error invoking app channel: "  # as it always was

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    channel = HttpAppChannel(port)
    try:
        with pytest.raises(PysentryError) as err:
            await channel.call(InvokeRequest("m", "POST"))
        assert str(err.value) == (
            f'error invoking app channel: Post "http://127.0.0.1:{port}/m": dial tcp '
            f"127.0.0.1:{port}: connect: connection refused"
        )
    finally:
        await channel.close()


async def test_at_most_max_connections_at_once() -> None:
    def script(buf: bytes, index: int) -> bytes | None:
        return (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nk" if buf.endswith(b"\r\n\r\n") else None
        )

    async with app(script, max_connections=2) as (channel, seen, conns):
        got = await asyncio.gather(*(channel.call(InvokeRequest("m")) for _ in range(6)))
        assert [g.body for g in got] == [b"k"] * 6
        assert len(conns) <= 2 and len(seen) == 6


async def test_an_idle_connection_is_not_reused_past_the_keepalive() -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nk"
    async with app(whole(ok), keepalive_s=0.05) as (channel, _, conns):
        await channel.call(InvokeRequest("m"))
        await channel.call(InvokeRequest("m"))
        assert len(conns) == 1
        await asyncio.sleep(0.1)
        await channel.call(InvokeRequest("m"))
        assert len(conns) == 2


async def test_a_response_with_both_transfer_encoding_and_content_length_is_refused() -> None:
    both = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
    async with app(whole(both + b"2\r\nhi\r\n0\r\n\r\n")) as (channel, _, _conns):
        with pytest.raises(PysentryError) as err:
            await channel.call(InvokeRequest("m"))
        text = str(err.value)
        assert text.startswith("error invoking app channel: 400, message=")
        assert "Transfer-Encoding can't be present with Content-Length" in text


async def test_large_bodies_through_the_parsers_flow_control_on_one_connection() -> None:
    big = bytes(range(256)) * 4096  # 1 MiB: the parser's buffer pauses reading past 128 KiB
    sized = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(big) + big
    chunk = 100_000
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    for at in range(0, len(big), chunk):
        piece = big[at : at + chunk]
        chunked += b"%x\r\n" % len(piece) + piece + b"\r\n"
    chunked += b"0\r\n\r\n"

    def script(buf: bytes, index: int) -> bytes | None:
        if not buf.endswith(b"\r\n\r\n"):
            return None
        return chunked if b"/chunked" in buf else sized

    async with app(script) as (channel, seen, conns):
        for method in ("sized", "chunked", "sized"):
            got = await channel.call(InvokeRequest(method))
            assert got.status == 200 and got.body == big
        assert len(conns) == 1 and len(seen) == 3


async def test_a_header_over_aiohttps_limit_and_a_101_are_not_kept() -> None:
    long = b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 9000 + b"\r\nContent-Length: 0\r\n\r\n"
    async with app(whole(long)) as (channel, _, _conns):
        with pytest.raises(PysentryError) as err:
            await channel.call(InvokeRequest("m"))
        assert str(err.value).startswith("error invoking app channel: 400, message=")
        assert "Got more than 8190 bytes" in str(err.value)
    upgrade = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n"
    async with app(whole(upgrade)) as (channel, _, conns):
        first = await channel.call(InvokeRequest("m"))
        assert first.status == 101
        await channel.call(InvokeRequest("m"))
        assert len(conns) == 2  # the upgraded connection was not used again
