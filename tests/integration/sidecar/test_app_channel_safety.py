"""What the app channel refuses to send, and a connection it refuses to reuse.

A query, header or content type that could end the request line or a header (CR, LF, any other
control character, a header name that is not an RFC 7230 token) fails the call with Go's
``net/url`` / ``net/http`` text, as Dapr's callee reports it, and nothing reaches the app. A
connection on which the app sent bytes after a complete response is not reused: the next caller
must never read another request's answer.
"""

from __future__ import annotations

import pytest

from pysentry.sidecar.app_channel import HttpAppChannel
from pysentry.sidecar.invocation import InvocationError, InvokeRequest
from tests.integration.sidecar.test_app_channel_http import app, whole

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def _url(channel: HttpAppChannel, target: str) -> str:
    return channel.base_url + target


@pytest.mark.parametrize(
    "query",
    [
        "a=1 HTTP/1.1\r\nX: y",
        "a=1\nGET /admin HTTP/1.1",
        "a=1\r",
        "a=\x00",
        "a=\x7f",
        "a=\tb",
    ],
)
async def test_a_query_with_a_control_character_is_refused_before_anything_is_sent(
    query: str,
) -> None:
    async with app(whole(OK)) as (channel, seen, conns):
        with pytest.raises(InvocationError) as err:
            await channel.call(InvokeRequest("m", "GET", query))
        quoted = (
            query.replace("\r", "\\r")
            .replace("\n", "\\n")
            .replace("\t", "\\t")
            .replace("\x00", "\\x00")
            .replace("\x7f", "\\x7f")
        )
        url = _url(channel, "/m")
        assert str(err.value) == (
            f'error invoking app channel: parse "{url}?{quoted}": '
            "net/url: invalid control character in URL"
        )
        assert seen == [] and conns == []  # not even a connection


@pytest.mark.parametrize(
    ("headers", "content_type", "why"),
    [
        ((("dapr-caller-app-id:admin x", "1"),), "", 'name "dapr-caller-app-id:admin x"'),
        ((("transfer-encoding ", "chunked"),), "", 'name "transfer-encoding "'),
        ((("x\r\ny", "1"),), "", 'name "x\\r\\ny"'),
        ((("", "1"),), "", 'name ""'),
        ((("caf\u00e9", "1"),), "", 'name "caf\u00e9"'),
        ((("x-a", "v\x00w"),), "", 'value for "x-a"'),
        ((("x-a", "v\r\nx-b: 2"),), "", 'value for "x-a"'),
        ((("x-a", "v\x1b"),), "", 'value for "x-a"'),
        ((), "text/plain\r\nx-b: w", 'value for "Content-Type"'),
    ],
)
async def test_a_header_go_would_refuse_fails_the_call_and_nothing_is_sent(
    headers: tuple[tuple[str, str], ...], content_type: str, why: str
) -> None:
    async with app(whole(OK)) as (channel, seen, conns):
        request = InvokeRequest("m", "POST", "", content_type, headers, b"x")
        with pytest.raises(InvocationError) as err:
            await channel.call(request)
        url = _url(channel, "/m")
        assert str(err.value) == (
            f'error invoking app channel: Post "{url}": net/http: invalid header field {why}'
        )
        assert seen == [] and conns == []


async def test_a_tab_and_non_ascii_in_a_value_are_sent_as_go_sends_them() -> None:
    async with app(whole(OK)) as (channel, seen, _):
        got = await channel.call(InvokeRequest("m", "GET", "", "", (("x-a", "a\tb \u00e9"),)))
        assert got.body == b"ok"
        assert "x-a: a\tb \u00e9\r\n".encode() in seen[0]


@pytest.mark.parametrize(
    "leftover",
    [b"H", b"HTTP/1.1 200 OK\r\nContent-Le", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab"],
)
async def test_a_connection_with_bytes_after_the_response_is_not_reused(leftover: bytes) -> None:
    answers = iter([OK + leftover, b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond"])
    async with app(lambda buf, _: next(answers) if buf.endswith(b"\r\n\r\n") else None) as (
        channel,
        _seen,
        conns,
    ):
        first = await channel.call(InvokeRequest("m"))
        assert first.body == b"ok"
        second = await channel.call(InvokeRequest("m"))
        assert (second.status, second.body) == (200, b"second")
        assert len(conns) == 2  # the first connection was closed, not reused


async def test_a_stray_crlf_after_the_response_keeps_the_connection() -> None:
    answers = iter([OK + b"\r\n", OK])
    async with app(lambda buf, _: next(answers) if buf.endswith(b"\r\n\r\n") else None) as (
        channel,
        _seen,
        conns,
    ):
        assert (await channel.call(InvokeRequest("m"))).body == b"ok"
        assert (await channel.call(InvokeRequest("m"))).body == b"ok"
        assert len(conns) == 1
