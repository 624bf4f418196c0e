"""The app channel: ``http://<app-channel-address>:<app-port>/<method>`` on a pooled client.

The method is canonical (:mod:`pysentry.config.method`) by the time it gets here; its path is
written with :func:`~pysentry.config.method.app_path`, so the app decodes exactly the string that
access control decided on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from pysentry.config.method import app_path
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
#: Request headers the channel writes itself (from the body and the request's content type).
_RECOMPUTED = frozenset({"content-type", "content-length"})


def _go_dial_error(verb: str, url: str, err: aiohttp.ClientConnectorError) -> str:
    """Go's ``*url.Error`` text for a failed dial, as Dapr's callee reports it:
    ``Post "http://127.0.0.1:8080/m": dial tcp 127.0.0.1:8080: connect: connection refused``."""
    errno = getattr(err.os_error, "errno", None)
    if not errno:
        return ""
    reason = os.strerror(errno)
    reason = reason[:1].lower() + reason[1:]
    op = verb[:1] + verb[1:].lower()
    return f'{op} "{url}": dial tcp {err.host}:{err.port}: connect: {reason}'


class HttpAppChannel:
    """Pooled aiohttp client to the local app. Create inside the running loop; ``close()`` it."""

    def __init__(
        self,
        port: int,
        *,
        address: str = "127.0.0.1",
        app_api_token: str | None = None,
        max_connections: int = 256,
        timeout_s: float = 60.0,
    ) -> None:
        self._base = f"http://{address}:{port}"
        self._token = app_api_token
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections, force_close=False),
            # No cookie store: Dapr's Go client has none (an app's Set-Cookie is only passed
            # back to the caller), and the jar costs a lookup on every call.
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
        )

    @property
    def base_url(self) -> str:
        return self._base

    async def call(self, request: InvokeRequest) -> InvokeResponse:
        url = self._base + app_path(request.method)
        if request.query:
            url += "?" + request.query
        # aiohttp sets Content-Length from the body it sends (the caller's value, when the
        # caller sent one: the body is the same bytes). A list: aiohttp makes the multidict.
        headers = [kv for kv in only_forwardable(request.headers) if kv[0] not in _RECOMPUTED]
        if request.content_type:
            headers.append(("Content-Type", request.content_type))
        if self._token is not None:
            if any(name == "dapr-api-token" for name, _ in headers):
                replaced: CIMultiDict[str] = CIMultiDict(headers)  # in place, as a dict would
                replaced["dapr-api-token"] = self._token
                headers = list(replaced.items())
            else:
                headers.append(("dapr-api-token", self._token))
        try:
            async with self._session.request(
                request.verb,
                URL(url, encoded=True),
                headers=headers,
                data=request.body if request.body or request.verb not in ("GET", "HEAD") else None,
                allow_redirects=False,
            ) as resp:
                body = await resp.read()
                out = tuple(
                    (low, v)
                    for k, v in resp.headers.items()
                    if (low := k.lower()) not in _SKIP_RESPONSE
                )
                return InvokeResponse(
                    status=resp.status,
                    headers=out,
                    content_type=resp.headers.get("Content-Type", ""),
                    body=body,
                )
        except (aiohttp.ClientError, TimeoutError) as err:
            log.debug("app channel call failed: method=%s err=%s", request.method, err)
            raise InvocationError(
                f"error invoking app channel: {_go_dial_error(request.verb, url, err) or err}"
                if isinstance(err, aiohttp.ClientConnectorError)
                else f"error invoking app channel: {err or type(err).__name__}"
            ) from err

    async def close(self) -> None:
        await self._session.close()


APP_DIAL_TIMEOUT_S = 0.5
APP_DIAL_INTERVAL_S = 0.1


async def wait_for_app(address: str, port: int, protocol: str) -> None:
    """Dapr's ``blockUntilAppIsReady``: dial the app's port every 100 ms (500 ms per attempt)
    until it accepts a connection; ``/v1.0/healthz`` answers not ready until then. Logged as
    Dapr's runtime does (scope ``dapr.runtime``)."""
    runtime_log = logging.getLogger("pysentry.sidecar")
    runtime_log.info(
        "application protocol: %s. waiting on port %d.  This will block until the app is "
        "listening on that port.",
        protocol,
        port,
    )
    while True:
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(address, port), APP_DIAL_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            await asyncio.sleep(APP_DIAL_INTERVAL_S)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        break
    runtime_log.info("application discovered on port %d", port)
