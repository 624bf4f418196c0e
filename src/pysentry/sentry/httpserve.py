"""Sentry's two plain-HTTP endpoints (``/healthz``, ``/metrics``) on asyncio alone.

Sentry serves nothing else over HTTP, so it does not load aiohttp (≈ 12 MiB of every Sentry
process and ≈ 0.13 s of its start-up; see docs/choices.md). What is served:

- ``GET`` and ``HEAD`` on the registered paths (the query string is ignored); any other method is
  ``405`` with ``Allow: GET, HEAD``, any other path ``404``;
- the request head is read with a size cap and a timeout, its header lines are parsed by the
  standard library (:func:`http.client.parse_headers`); a head that is not HTTP/1.x, too large or
  too slow is ``400`` / ``431`` / closed;
- keep-alive as HTTP/1.1 wants it (closed after ``Connection: close``, after HTTP/1.0 without
  ``keep-alive``, after a request with a body, and after ``IDLE_TIMEOUT_S`` idle), at most
  ``MAX_REQUESTS`` requests per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024
HEAD_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 60.0
MAX_REQUESTS = 1000
SERVER = "pysentry"


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes


Route = Callable[[], Reply]


class _BadRequest(Exception):
    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    keep_alive: bool


def _parse(head: bytes) -> _Request:
    line, _, rest = head.partition(b"\r\n")
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise _BadRequest(400, "not an HTTP/1.x request line")
    try:
        method, target, version = (p.decode("ascii") for p in parts)
        headers = http.client.parse_headers(io.BytesIO(rest))
    except (UnicodeDecodeError, http.client.HTTPException) as err:
        raise _BadRequest(400, f"bad request head: {err}") from err
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise _BadRequest(400, f"unsupported version {version!r}")
    tokens = {t.strip().lower() for t in (headers.get("Connection") or "").split(",")}
    keep = "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens
    length = (headers.get("Content-Length") or "0").strip()
    has_body = length != "0" or "Transfer-Encoding" in headers
    return _Request(method, target.split("?", 1)[0], keep and not has_body)


def _response(status: int, body: bytes, content_type: str, *, head: bool, keep: bool) -> bytes:
    reason = http.client.responses.get(status, "Unknown")
    lines = [
        f"HTTP/1.1 {status} {reason}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        f"Date: {formatdate(usegmt=True)}",
        f"Server: {SERVER}",
        "Connection: keep-alive" if keep else "Connection: close",
    ]
    if status == 405:
        lines.append("Allow: GET, HEAD")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else body)


class PlainHttpServer:
    """GET/HEAD ``routes`` (path -> reply function) on ``host:port`` (``""`` = all interfaces)."""

    def __init__(self, routes: dict[str, Route]) -> None:
        self._routes = routes
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.StreamWriter, asyncio.Task[None]] = {}

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(
            self._serve, host or None, port, limit=MAX_HEAD_BYTES
        )

    @property
    def port(self) -> int:
        """The bound port (useful after ``start(host, 0)``)."""
        assert self._server is not None, "not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        handlers = list(self._connections.values())
        for writer in list(self._connections):
            writer.close()
        await self._server.wait_closed()
        if handlers:
            await asyncio.wait(handlers, timeout=5.0)
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[writer] = task
        try:
            for served in range(MAX_REQUESTS):
                timeout = HEAD_TIMEOUT_S if served == 0 else IDLE_TIMEOUT_S
                if not await self._one(reader, writer, timeout, last=served == MAX_REQUESTS - 1):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            self._connections.pop(writer, None)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _one(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float, last: bool
    ) -> bool:
        """Answer one request; True when the connection stays open for another."""
        try:
            async with asyncio.timeout(timeout):
                head = await reader.readuntil(b"\r\n\r\n")
            request = _parse(head)
        except asyncio.LimitOverrunError:
            writer.write(_response(431, b"", "text/plain", head=False, keep=False))
            return False
        except _BadRequest as err:
            log.debug("bad HTTP request: %s", err)
            writer.write(_response(err.status, b"", "text/plain", head=False, keep=False))
            return False
        keep = request.keep_alive and not last
        route = self._routes.get(request.path)
        if request.method not in ("GET", "HEAD"):
            reply = Reply(405, "text/plain; charset=utf-8", b"405: Method Not Allowed")
        elif route is None:
            reply = Reply(404, "text/plain; charset=utf-8", b"404: Not Found")
        else:
            try:
                reply = route()
            except Exception:
                log.exception("%s %s failed", request.method, request.path)
                reply = Reply(500, "text/plain; charset=utf-8", b"500: Internal Server Error")
        head_only = request.method == "HEAD"
        writer.write(
            _response(reply.status, reply.body, reply.content_type, head=head_only, keep=keep)
        )
        await writer.drain()
        return keep
