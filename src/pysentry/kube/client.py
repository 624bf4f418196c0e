"""A small typed JSON client for the Kubernetes API, on aiohttp.

Objects are plain ``dict``s as the API server sends them. Errors are translated at this one
boundary: an HTTP error status becomes :class:`KubeApiError` (with the API server's own message,
which names the user, verb and resource of a 403), a connection failure :class:`KubeUnreachable`.
:attr:`KubeClient.connected` tells whether the last exchange with the API server worked (for
``/healthz``).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from kubernetes_asyncio.client import Configuration

from pysentry.errors import PysentryError
from pysentry.kube.config import KubeConfigSource, load_kube_configuration

JsonObject = dict[str, Any]
REQUEST_TIMEOUT_S = 15.0
WATCH_TIMEOUT_S = 300  # server side; the API server closes the stream after this
_WATCH_READ_TIMEOUT_S = WATCH_TIMEOUT_S + 30.0


class KubeError(PysentryError):
    """Base for Kubernetes API failures."""


class KubeUnreachable(KubeError):
    """The API server could not be reached (or the connection broke)."""


class KubeApiError(KubeError):
    """The API server answered with an error status."""

    def __init__(self, method: str, path: str, status: int, reason: str, message: str) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(f"{method} {path}: HTTP {status} {reason}: {message}")

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def forbidden(self) -> bool:
        return self.status == 403

    @property
    def gone(self) -> bool:
        return self.status == 410


def _ssl_context(conf: Configuration) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=conf.ssl_ca_cert or None)
    if conf.cert_file:
        ctx.load_cert_chain(conf.cert_file, conf.key_file or None)
    if not conf.verify_ssl:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _api_error(method: str, path: str, status: int, raw: bytes) -> KubeApiError:
    reason, message = "", raw.decode(errors="replace")[:500]
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict):
        reason = str(body.get("reason", ""))
        message = str(body.get("message", message))
    return KubeApiError(method, path, status, reason, message)


class KubeClient:
    """One connection pool to one API server. Use ``async with await KubeClient.connect(...)``."""

    def __init__(self, source: KubeConfigSource) -> None:
        self.source = source
        self._conf = source.configuration
        self.server = str(self._conf.host).rstrip("/")
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=_ssl_context(self._conf), limit=32),
        )
        self.connected: bool | None = None  # None until the first exchange
        self.last_error: str | None = None

    @classmethod
    async def connect(
        cls, kubeconfig: str | None, *, env: Mapping[str, str] | None = None
    ) -> KubeClient:
        return cls(await load_kube_configuration(kubeconfig, env=env))

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._session.close()

    async def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token = await self._conf.get_api_key_with_prefix("BearerToken")
        if token:
            headers["Authorization"] = str(token)
        return headers

    def _unreachable(self, method: str, path: str, err: BaseException) -> KubeUnreachable:
        self.connected = False
        self.last_error = f"{type(err).__name__}: {err}"
        return KubeUnreachable(
            f"cannot reach the Kubernetes API server at {self.server!r} ({method} {path}): "
            f"{self.last_error}; check --kubeconfig/KUBECONFIG and that the API server is up"
        )

    async def request(
        self,
        method: str,
        path: str,
        body: JsonObject | None = None,
        *,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> JsonObject:
        headers = await self._headers()
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        try:
            async with self._session.request(
                method,
                self.server + path,
                data=data,
                headers=headers,
                params=params,
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise self._unreachable(method, path, err) from err
        self.connected, self.last_error = True, None
        if status >= 300:
            raise _api_error(method, path, status, raw)
        decoded = json.loads(raw) if raw else {}
        return decoded if isinstance(decoded, dict) else {"items": decoded}

    async def get(self, path: str, *, params: Mapping[str, str] | None = None) -> JsonObject:
        return await self.request("GET", path, params=params)

    async def put(self, path: str, body: JsonObject) -> JsonObject:
        return await self.request("PUT", path, body)

    async def post(self, path: str, body: JsonObject) -> JsonObject:
        return await self.request("POST", path, body)

    async def patch(
        self, path: str, body: JsonObject, *, content_type: str = "application/merge-patch+json"
    ) -> JsonObject:
        """PATCH; ``content_type`` picks merge (default), strategic-merge or json-patch."""
        return await self.request("PATCH", path, body, content_type=content_type)

    async def watch(
        self,
        path: str,
        *,
        resource_version: str,
        params: Mapping[str, str] | None = None,
    ) -> AsyncIterator[tuple[str, JsonObject]]:
        """``(type, object)`` events of one watch stream, until the server closes it.

        An ``ERROR`` event (e.g. 410 Gone: the resourceVersion is too old) is raised as
        :class:`KubeApiError` so the caller re-lists.
        """
        query = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_TIMEOUT_S),
        }
        query.update(params or {})
        headers = await self._headers()
        try:
            async with self._session.get(
                self.server + path,
                params=query,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=None, sock_read=_WATCH_READ_TIMEOUT_S),
            ) as resp:
                if resp.status >= 300:
                    raise _api_error("WATCH", path, resp.status, await resp.read())
                self.connected, self.last_error = True, None
                async for line in resp.content:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    kind, obj = str(event.get("type", "")), event.get("object") or {}
                    if kind == "ERROR":
                        raise KubeApiError(
                            "WATCH",
                            path,
                            int(obj.get("code", 500)),
                            str(obj.get("reason", "")),
                            str(obj.get("message", "")),
                        )
                    yield kind, obj
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise self._unreachable("WATCH", path, err) from err
