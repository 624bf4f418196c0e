"""The app channel: ``http://<app-channel-address>:<app-port>/<method>`` on a pooled client.

The method is canonical (:mod:`pysentry.config.method`) by the time it gets here; its path is
written with :func:`~pysentry.config.method.app_path`, so the app decodes exactly the string that
access control decided on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from pysentry.config.method import app_path, go_strconv_quote
from pysentry.sidecar.app_dial import DialError, dial, go_dial_error
from pysentry.sidecar.app_http import (
    IDEMPOTENT,
    AppHttpError,
    BadResponse,
    Connection,
    Disconnected,
    Response,
)
from pysentry.sidecar.invocation import (
    HOP_BY_HOP,
    InvocationError,
    InvokeRequest,
    InvokeResponse,
    only_forwardable,
)

log = logging.getLogger(__name__)

#: Response headers the app sets that the sidecar recomputes.
_SKIP_RESPONSE = HOP_BY_HOP | {"content-type", "date", "server"}
#: Idle connections older than this are not reused (aiohttp's keep-alive timeout).
KEEPALIVE_S = 15.0
#: Request headers the channel writes itself (from the body and the request's content type).
_RECOMPUTED = frozenset({"content-type", "content-length"})


def _expire(waiter: asyncio.Future[Response]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


#: RFC 7230 ``tchar``: what Go's ``httpguts.ValidHeaderFieldName`` accepts.
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
#: Control characters: Go refuses them in a URL (``net/url``) and, but for TAB, in a header value.
_CTL = frozenset(chr(c) for c in (*range(0x20), 0x7F))
_CTL_IN_VALUE = _CTL - {"\t"}


class UnsafeRequest(Exception):
    """What Go's ``net/http`` or ``net/url`` refuses to send; the message is Go's error text."""


def _check_query(url: str, query: str) -> None:
    """A query is passed on as the caller wrote it, so it must not be able to end the request
    line (CR/LF would let a caller write a second request, past the ACL, with forged identity
    headers): Go's ``url.Parse`` refuses any control character, and so do we, before dialling."""
    if not _CTL.isdisjoint(query):
        raise UnsafeRequest(
            f"parse {go_strconv_quote(url)}: net/url: invalid control character in URL"
        )


def _check_header(verb: str, url: str, name: str, value: str) -> None:
    """Go's transport refuses a header whose name is not a token or whose value has a control
    character other than TAB (``net/http: invalid header field ...``); so do we."""
    op = verb[:1] + verb[1:].lower()
    if not name or not _TOKEN.issuperset(name):
        why = f"invalid header field name {go_strconv_quote(name)}"
    elif not _CTL_IN_VALUE.isdisjoint(value):
        why = f"invalid header field value for {go_strconv_quote(name)}"
    else:
        return
    raise UnsafeRequest(f"{op} {go_strconv_quote(url)}: net/http: {why}")


class HttpAppChannel:
    """Pooled HTTP/1.1 connections to the local app (:mod:`.app_http`). Create inside the
    running loop; ``close()`` it. No cookie store (Dapr's Go client has none: an app's
    Set-Cookie is only passed back to the caller), no redirects followed, bodies as sent."""

    def __init__(
        self,
        port: int,
        *,
        address: str = "127.0.0.1",
        app_api_token: str | None = None,
        max_connections: int = 256,
        timeout_s: float = 60.0,
        keepalive_s: float = KEEPALIVE_S,
    ) -> None:
        self._host, self._port = address, port
        self._base = f"http://{address}:{port}"
        self._host_line = f"Host: {address}:{port}\r\n"
        self._token = app_api_token
        self._limit = max_connections
        self._timeout_s = timeout_s
        self._keepalive_s = keepalive_s
        self._idle: list[tuple[float, Connection]] = []
        self._busy = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    @property
    def base_url(self) -> str:
        return self._base

    def _head(self, request: InvokeRequest, target: str, data: bytes | None) -> bytes:
        lines = [f"{request.verb} {target} HTTP/1.1\r\n", self._host_line]
        # The body's own length is written last, as aiohttp did (the caller's Content-Length
        # is the same number: the body is the same bytes).
        for name, value in self._headers(request):
            if not name or not _TOKEN.issuperset(name) or not _CTL_IN_VALUE.isdisjoint(value):
                _check_header(request.verb, self._base + target, name, value)
            lines.append(f"{name}: {value}\r\n")
        if data is not None:
            lines.append(f"Content-Length: {len(data)}\r\n")
        lines.append("\r\n")
        return "".join(lines).encode()

    def _headers(self, request: InvokeRequest) -> list[tuple[str, str]]:
        headers = [kv for kv in only_forwardable(request.headers) if kv[0] not in _RECOMPUTED]
        if request.content_type:
            headers.append(("Content-Type", request.content_type))
        if self._token is not None:
            at = next((i for i, kv in enumerate(headers) if kv[0] == "dapr-api-token"), None)
            if at is None:
                headers.append(("dapr-api-token", self._token))
            else:  # replaced in place, the others dropped (as a multidict's item assignment)
                rest = [kv for kv in headers[at + 1 :] if kv[0] != "dapr-api-token"]
                headers[at:] = [("dapr-api-token", self._token), *rest]
        return headers

    async def call(self, request: InvokeRequest) -> InvokeResponse:
        target = app_path(request.method)
        if request.query:
            target += "?" + request.query
        url = self._base + target
        verb = request.verb
        data = request.body if request.body or verb not in ("GET", "HEAD") else None
        try:
            if request.query:
                _check_query(url, request.query)
            parts = [self._head(request, target, data)]
        except UnsafeRequest as err:  # nothing was sent: not one byte reaches the app
            log.debug("app channel call refused: method=%s err=%s", request.method, err)
            raise InvocationError(f"error invoking app channel: {err}") from err
        if data:
            parts.append(data)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        retries = 1 if verb in IDEMPOTENT else 0
        try:
            while True:
                conn = await self._acquire(deadline)
                try:
                    waiter = conn.send(parts, head_only=verb == "HEAD")
                    timer = loop.call_at(deadline, _expire, waiter)
                    try:
                        resp = await waiter
                    finally:
                        timer.cancel()
                except Disconnected:
                    if not retries:
                        raise
                    retries -= 1
                    continue
                finally:
                    self._release(conn)
                break
        except DialError as err:
            log.debug("app channel call failed: method=%s err=%s", request.method, err)
            text = go_dial_error(verb, url, self._host, self._port, err.os_error)
            raise InvocationError(f"error invoking app channel: {text}") from err
        except BadResponse as err:
            log.debug("app channel call failed: method=%s err=%s", request.method, err)
            text = f"400, message={str(err)!r}, url={url!r}"  # aiohttp's ClientResponseError
            raise InvocationError(f"error invoking app channel: {text}") from err
        except (AppHttpError, TimeoutError) as err:
            log.debug("app channel call failed: method=%s err=%s", request.method, err)
            raise InvocationError(
                f"error invoking app channel: {err or type(err).__name__}"
            ) from err
        content_type = ""
        out: list[tuple[str, str]] = []
        for name, value in resp.headers:
            low = name.lower()
            if low == "content-type" and not content_type:
                content_type = value
            if low not in _SKIP_RESPONSE:
                out.append((low, value))
        return InvokeResponse(resp.status, tuple(out), content_type, resp.body)

    async def _acquire(self, deadline: float) -> Connection:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            while self._idle:
                since, conn = self._idle.pop()
                if conn.usable and now - since <= self._keepalive_s:
                    self._busy += 1
                    return conn
                conn.close()
            if self._busy < self._limit:
                break
            slot = loop.create_future()
            self._waiters.append(slot)
            async with asyncio.timeout_at(deadline):
                await slot
        self._busy += 1
        try:
            async with asyncio.timeout_at(deadline):
                return await dial(self._host, self._port)
        except BaseException:
            self._busy -= 1
            self._wake()
            raise

    def _release(self, conn: Connection) -> None:
        self._busy -= 1
        conn.done()
        if conn.usable and not self._closed:
            self._idle.append((asyncio.get_running_loop().time(), conn))
        else:
            conn.close()
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            slot = self._waiters.popleft()
            if not slot.done():
                slot.set_result(None)
                return

    async def close(self) -> None:
        self._closed = True
        for _, conn in self._idle:
            conn.close()
        self._idle.clear()
