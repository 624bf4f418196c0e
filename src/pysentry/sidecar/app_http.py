"""The app channel's HTTP/1.1 connections: one request at a time each, kept alive in a pool.

aiohttp's client cost about 130 us of CPU per call to the app (a tenth of both sidecars' CPU per
invoke). This keeps aiohttp's response parser (llhttp, in C: ``aiohttp.http_parser``), the part
that decides what the app's bytes mean, and replaces only the client around it: the connection,
the request write (exactly the bytes aiohttp's client wrote: ``Host``, the headers in order,
``Content-Length`` last) and the pool. The parser frames the response (Content-Length, chunked,
or the end of the connection; none for ``HEAD``, 1xx, 204 and 304), applies aiohttp's limits
(8190 bytes a line or field, 128 headers) and refuses what aiohttp refused, with aiohttp's text.
Interim 1xx answers are skipped. Failures read as aiohttp's did (the channel puts them after
``error invoking app channel:``): ``Server disconnected`` when the app closes before the
response head arrived, ``Response payload is not completed: <...>`` once it had; idempotent
requests get one retry when the connection is lost before the response head, as aiohttp
retries them.
"""

from __future__ import annotations

import asyncio
from typing import cast

from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_parser import HttpResponseParser
from aiohttp.streams import StreamReader

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
READ_LIMIT = 2**16
"""aiohttp's read buffer limit: the parser's body buffer pauses reading past twice this."""

Header = tuple[str, str]


class AppHttpError(Exception):
    """The app's connection failed or its response could not be read; ``str()`` is the text."""


class BadResponse(AppHttpError):
    """The app's response does not parse (the channel words it as aiohttp's 400 errors)."""


class Disconnected(AppHttpError):
    """Lost before the response head arrived (an idempotent request may be retried)."""

    def __init__(self, message: str = "Server disconnected") -> None:
        super().__init__(message)


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[Header], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class Connection(asyncio.Protocol):
    """One connection to the app; :meth:`send` one request, await its response."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = True
        self.connected = True  # read by aiohttp's StreamReader, with the two below
        self._reading_paused = False
        self._waiter: asyncio.Future[Response] | None = None
        self._parser: HttpResponseParser | None = None
        self._head: tuple[int, list[Header]] | None = None
        self._payload: StreamReader | None = None  # the final response's body, as parsed
        self._chunks: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    @property
    def usable(self) -> bool:
        """Open, idle and fit for the next request."""
        transport = self.transport
        return self.reusable and not self.closed and not (transport and transport.is_closing())

    # flow control, called by the parser's StreamReader when the body buffer is full / drained
    def pause_reading(self) -> None:
        if self.transport is not None and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self, resume_parser: bool = True) -> None:
        if self.transport is not None and self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()

    def send(self, data: list[bytes], *, head_only: bool) -> asyncio.Future[Response]:
        assert self.transport is not None and self._waiter is None
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        self._parser = HttpResponseParser(
            cast(BaseProtocol, self),  # what the parser's StreamReader uses of one is here
            loop,
            READ_LIMIT,
            response_with_body=not head_only,
            read_until_eof=True,
            auto_decompress=False,  # the app's bytes go to the caller as they are
        )
        self._head = None
        self._payload = None
        self._chunks = []
        self.transport.writelines(data)
        return self._waiter

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done() or self._parser is None:
            self.reusable = False  # bytes nobody asked for: not reused
            if waiter is None:
                self.close()
            return
        try:
            messages, upgraded, _ = self._parser.feed_data(data)
        except HttpProcessingError as err:
            self._fail(BadResponse(err.message))
            return
        if upgraded:  # 101 Switching Protocols: what follows is not HTTP
            self.reusable = False
        for message, payload in messages:
            if 100 <= message.code < 200 and message.code != 101:
                continue  # interim (100 Continue, 103 Early Hints): the answer follows
            if self._head is not None:  # a second response to one request
                self.reusable = False
                continue
            if message.should_close:
                self.reusable = False
            self._head = (message.code, _decode(message.raw_headers))
            self._payload = payload
        self._drain()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._head is None:  # aiohttp's ServerDisconnectedError, or ClientOSError
            text = str(OSError(*exc.args)) if isinstance(exc, OSError) else "Server disconnected"
            waiter.set_exception(Disconnected(text))
            return
        assert self._parser is not None
        try:
            self._parser.feed_eof()  # a body framed by the close ends here; a framed one is short
        except HttpProcessingError as err:
            waiter.set_exception(AppHttpError(f"Response payload is not completed: {err!r}"))
            return
        self._drain()
        if not waiter.done():
            waiter.set_exception(AppHttpError("Response payload is not completed"))

    def done(self) -> None:
        """The caller has its response (or gave up): the next request may use the connection."""
        waiter = self._waiter
        if waiter is None or not waiter.done() or waiter.cancelled() or waiter.exception():
            self.reusable = False  # abandoned or failed mid-response: its bytes may still come
        elif self.reusable and self._parser is not None and _has_leftover(self._parser):
            self.reusable = False  # bytes after the response: the next caller must not get them
        self._waiter = None
        self._parser = None
        self._payload = None
        if not self.reusable:
            self.close()

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None and not self.closed:
            self.transport.close()

    def _fail(self, err: AppHttpError) -> None:
        self.reusable = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(err)
        if self.transport is not None:
            self.transport.abort()

    def _drain(self) -> None:
        payload = self._payload
        if payload is None or self._head is None:
            return
        data = payload.read_nowait(-1)
        if data:
            self._chunks.append(data)
        if payload.is_eof():
            status, headers = self._head
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
                waiter.set_result(Response(status, headers, body))


def _decode(raw: tuple[tuple[bytes, bytes], ...]) -> list[Header]:
    return [
        (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        for name, value in raw
    ]


def _has_leftover(parser: HttpResponseParser) -> bool:
    """True if the parser holds bytes past the response it returned (the start of another
    one, which Go's transport also refuses to reuse a connection after)."""
    try:
        return parser.feed_eof() is not None
    except HttpProcessingError:
        return True
