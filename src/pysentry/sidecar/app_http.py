"""The app channel's HTTP/1.1 connections: one request at a time each, kept alive in a pool.

aiohttp's client cost about 130 us of CPU per call to the app (a tenth of both sidecars' CPU per
invoke); this is what the channel needs of it and no more: it writes exactly the request bytes
aiohttp wrote (``Host``, the headers in order, ``Content-Length`` last) and reads a response
framed by ``Content-Length``, chunked or by the end of the connection (none for ``HEAD``, 1xx,
204 and 304), skipping interim 1xx answers. Failures read as aiohttp's did (the channel puts them
after ``error invoking app channel:``): ``Server disconnected`` when the app closes before the
response is complete and the response head had not arrived, ``Response payload is not
completed: ...`` once it had; idempotent requests get one retry when the connection is lost
before the response head, as aiohttp retries them.
"""

from __future__ import annotations

import asyncio
from typing import cast

#: Status line plus headers: past this the response is refused (aiohttp's own limits: 8 KiB a
#: line, 32 Ki headers of 8 KiB, whichever comes first).
MAX_HEAD = 1 << 20
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_NO_BODY = frozenset({204, 304})
_CL_SHORT = (
    "Response payload is not completed: <ContentLengthError: 400, "
    "message='Not enough data to satisfy content length header (received {} of {} bytes).'>"
)
_CHUNK_SHORT = (
    "Response payload is not completed: <TransferEncodingError: 400, "
    "message='Not enough data to satisfy transfer length header.'>"
)

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
        self._buf = bytearray()
        self._waiter: asyncio.Future[Response] | None = None
        self._head_only = False
        self._head: tuple[int, list[Header]] | None = None
        self._length: int | None = None  # body bytes still due; None: chunked or to the end
        self._expected = 0  # the Content-Length
        self._chunked = False
        self._chunks: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    @property
    def usable(self) -> bool:
        """Open, idle and fit for the next request."""
        transport = self.transport
        return self.reusable and not self.closed and not (transport and transport.is_closing())

    def send(self, data: list[bytes], *, head_only: bool) -> asyncio.Future[Response]:
        assert self.transport is not None and self._waiter is None
        self._waiter = asyncio.get_running_loop().create_future()
        self._head_only = head_only
        self._head = None
        self._chunks = []
        self.transport.writelines(data)
        return self._waiter

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():  # bytes nobody asked for: not reused
            self.reusable = False
            if waiter is None:
                self.close()
            return
        self._buf += data
        try:
            self._parse()
        except AppHttpError as err:
            self._fail(err)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        if self._waiter is None or self._waiter.done():
            return
        if self._head is not None and self._length is None and not self._chunked:
            self._finish(b"".join(self._chunks) + bytes(self._buf))  # framed by the close
        elif self._head is None:  # aiohttp's ServerDisconnectedError, or ClientOSError
            text = str(OSError(*exc.args)) if isinstance(exc, OSError) else "Server disconnected"
            self._waiter.set_exception(Disconnected(text))
        elif self._chunked:
            self._waiter.set_exception(AppHttpError(_CHUNK_SHORT))
        else:
            got = len(self._buf)  # a Content-Length body stays in the buffer until complete
            self._waiter.set_exception(AppHttpError(_CL_SHORT.format(got, self._expected)))

    def done(self) -> None:
        """The caller has its response (or gave up): the next request may use the connection."""
        waiter = self._waiter
        if waiter is None or not waiter.done() or waiter.cancelled() or waiter.exception():
            self.reusable = False  # abandoned or failed mid-response: its bytes may still come
        self._waiter = None
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

    # --- parsing ----------------------------------------------------------------------------
    def _parse(self) -> None:
        buf = self._buf
        while self._head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    raise BadResponse(f"response head over {MAX_HEAD} bytes")
                return
            head = bytes(buf[:end])
            del buf[: end + 4]
            status, headers, version = _read_head(head)
            if 100 <= status < 200 and status != 101:
                continue  # interim (100 Continue, 103 Early Hints): the answer follows
            self._start_body(status, headers, version)
        if self._chunked:
            self._read_chunks()
        elif self._length is not None and len(buf) >= self._length:
            body = bytes(buf[: self._length])
            del buf[: self._length]
            self._finish(body)
        # else: the body ends with the connection (connection_lost)

    def _start_body(self, status: int, headers: list[Header], version: bytes) -> None:
        self._head = (status, headers)
        connection = ""
        encoding = ""
        length: str | None = None
        for name, value in headers:
            low = name.lower()
            if low == "connection":
                connection += "," + value.lower()
            elif low == "transfer-encoding":
                encoding = value.lower()
            elif low == "content-length":
                if length is not None and length != value:
                    raise BadResponse(f"conflicting Content-Length headers: {value!r}")
                length = value
        if encoding and length is not None:  # a smuggling vector: refused, as llhttp does
            raise BadResponse("Transfer-Encoding can't be present with Content-Length")
        tokens = {t.strip() for t in connection.split(",")}
        if "close" in tokens or (version == b"HTTP/1.0" and "keep-alive" not in tokens):
            self.reusable = False
        self._chunked = False
        if self._head_only or status in _NO_BODY or status < 200:
            self._length = 0
        elif encoding.rsplit(",", 1)[-1].strip() == "chunked":
            self._chunked, self._length = True, None
        elif length is not None:
            if not length.isdigit():
                raise BadResponse(f"invalid Content-Length: {length!r}")
            self._length = self._expected = int(length)
        else:
            self._length = None
            self.reusable = False

    def _read_chunks(self) -> None:
        buf = self._buf
        while True:
            line_end = buf.find(b"\r\n")
            if line_end < 0:
                return
            size_text = bytes(buf[:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadResponse(f"invalid chunk size: {size_text[:32]!r}") from None
            if size == 0:  # then trailers, if any, and an empty line
                after = line_end + 2
                if buf[after : after + 2] == b"\r\n":
                    end = after + 2
                else:
                    found = buf.find(b"\r\n\r\n", after)
                    if found < 0:
                        if len(buf) > MAX_HEAD:
                            raise BadResponse(f"chunk trailers over {MAX_HEAD} bytes")
                        return
                    end = found + 4
                del buf[:end]
                self._finish(b"".join(self._chunks))
                return
            start = line_end + 2
            if len(buf) < start + size + 2:
                return
            if buf[start + size : start + size + 2] != b"\r\n":
                raise BadResponse("chunk not followed by CRLF")
            self._chunks.append(bytes(buf[start : start + size]))
            del buf[: start + size + 2]

    def _finish(self, body: bytes) -> None:
        assert self._head is not None
        status, headers = self._head
        if self._buf:
            self.reusable = False  # bytes past the response: not ours to guess at
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(Response(status, headers, body))


def _read_head(head: bytes) -> tuple[int, list[Header], bytes]:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    version = parts[0]
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(parts) < 2:
        raise BadResponse(f"bad status line: {lines[0][:100]!r}")
    code = parts[1]
    if len(code) != 3 or not code.isdigit():
        raise BadResponse(f"bad status code: {code[:100]!r}")
    headers: list[Header] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
            raise BadResponse(f"bad header line: {line[:100]!r}")
        headers.append(
            (
                name.decode("utf-8", "surrogateescape"),
                value.strip(b" \t").decode("utf-8", "surrogateescape"),
            )
        )
    return int(code), headers, version
