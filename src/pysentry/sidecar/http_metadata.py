"""The HTTP API's endpoints about the sidecar itself: ``/v1.0/healthz``, ``/v1.0/healthz/outbound``,
``/v1.0/metadata`` (with an ``mtls`` block) and Dapr's ``PUT /v1.0/metadata/{key}``.

:class:`MetadataEndpoints` holds what they answer from and their handlers;
:class:`pysentry.sidecar.http_api.HttpApi` is one and routes them. :func:`error_response` is Dapr's
JSON error body (``{"errorCode", "message"}``), which every endpoint of the API answers with.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from aiohttp import web

from pysentry import RUNTIME_VERSION

if TYPE_CHECKING:
    from pysentry.sidecar.http_api import ApiSettings

MAX_METADATA_KEYS = 256
MAX_METADATA_VALUE = 64 << 10

#: () -> (SPIFFE ID, cert not_after) of the current identity, or None with mTLS off.
IdentityInfo = Callable[[], tuple[str, datetime] | None]


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps({"errorCode": code, "message": message}).encode(),
        content_type="application/json",
    )


class MetadataEndpoints:
    """Health and metadata, answered from the settings, the current identity, the readiness
    checks and the ``extended`` metadata (shared with the gRPC API)."""

    def __init__(
        self,
        settings: ApiSettings,
        identity: IdentityInfo,
        ready: Callable[[], bool],
        outbound_ready: Callable[[], bool],
        extended: dict[str, str] | None,
    ) -> None:
        self._s = settings
        self._identity = identity
        self._ready = ready
        self._outbound_ready = outbound_ready
        self._extended: dict[str, str] = {} if extended is None else extended

    async def _healthz(self, request: web.Request) -> web.Response:
        want = request.query.get("appid")
        if want is not None and want != self._s.app_id:
            return error_response(500, "ERR_HEALTH_APPID_NOT_MATCH", "dapr app-id does not match")
        if not self._ready():
            return error_response(500, "ERR_HEALTH_NOT_READY", "dapr is not ready: [app]")
        return web.Response(status=204)

    async def _healthz_outbound(self, request: web.Request) -> web.Response:
        if not self._outbound_ready():
            return error_response(
                500, "ERR_OUTBOUND_HEALTH_NOT_READY", "dapr outbound is not ready"
            )
        return web.Response(status=204)

    async def _metadata(self, request: web.Request) -> web.Response:
        s = self._s
        ident = self._identity()
        body: dict[str, object] = {
            "id": s.app_id,
            "runtimeVersion": RUNTIME_VERSION,
            "enabledFeatures": [],
            "actors": [],
            "components": [],
            "httpEndpoints": [],
            "subscriptions": [],
            "extended": {
                **self._extended,
                "daprRuntimeVersion": RUNTIME_VERSION,
                "namespace": s.namespace,
            },
            "appConnectionProperties": {
                "port": s.app_port or 0,
                "protocol": s.app_protocol,
                "channelAddress": "127.0.0.1",
            },
            "mtls": {
                "enabled": s.mtls_enabled,
                "spiffeId": ident[0] if ident else "",
                "certExpiry": ident[1].isoformat() if ident else "",
            },
        }
        return web.json_response(body)

    async def _set_metadata(self, request: web.Request) -> web.Response:
        """Dapr's ``SetMetadata``: a key/value shown under ``extended`` (the real CLI stores
        ``cliPID``, ``appPID`` and ``appCommand`` here)."""
        key = request.match_info["key"]
        body = await request.read()
        if len(body) > MAX_METADATA_VALUE or (
            key not in self._extended and len(self._extended) >= MAX_METADATA_KEYS
        ):
            return error_response(
                400,
                "ERR_MALFORMED_REQUEST",
                f"metadata {key!r} refused: at most {MAX_METADATA_KEYS} keys of "
                f"{MAX_METADATA_VALUE} bytes each",
            )
        try:
            self._extended[key] = body.decode("utf-8")
        except UnicodeDecodeError:
            return error_response(
                400, "ERR_MALFORMED_REQUEST", f"metadata value for {key!r} is not UTF-8 text"
            )
        return web.Response(status=204)
