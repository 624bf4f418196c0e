"""The app-facing HTTP API (aiohttp, loopback): ``/v1.0/invoke``, health and metadata.

Shapes and codes follow spec/dapr-cli-sdk.md §C.4: errors are ``{"errorCode", "message"}``,
``ERR_DIRECT_INVOKE`` is 500 (403 for an access-control denial), a missing target is 404, and
with ``DAPR_API_TOKEN`` set a wrong or missing ``dapr-api-token`` is 401 ``invalid api token``
(health endpoints exempt).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import unquote

from aiohttp import web

from pysentry.config.method import canonical_method
from pysentry.errors import InvalidMethod
from pysentry.sidecar.blocks import building_block
from pysentry.sidecar.http_metadata import IdentityInfo, MetadataEndpoints, error_response
from pysentry.sidecar.invocation import (
    VERBS,
    InvocationError,
    Invoker,
    InvokeRequest,
    Target,
)
from pysentry.sidecar.limits import BodyBudget, BudgetExhausted, budget_for
from pysentry.sidecar.metrics import SidecarMetrics

log = logging.getLogger(__name__)

API_TOKEN_HEADER = "dapr-api-token"
APP_ID_HEADER = "dapr-app-id"
DEFAULT_MAX_BODY_SIZE = 4 << 20
#: Parsed invocation targets remembered (past this the memo starts over).
MAX_TARGETS = 1024
#: How long a call waits for room in the in-flight body budget before it is refused.
BODY_BUDGET_WAIT_S = 30.0
_TOKEN_EXEMPT = ("/v1.0/healthz", "/v1.0/healthz/outbound")
_SKIP_REQUEST = frozenset({API_TOKEN_HEADER, APP_ID_HEADER, "content-type", "expect"})
_SKIP_RESPONSE = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive", "content-type"}
)

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class ApiSettings:
    app_id: str
    namespace: str
    app_port: int | None
    http_port: int
    internal_grpc_port: int
    mtls_enabled: bool
    trust_domain: str = "public"
    api_token: str | None = None
    max_body_size: int = DEFAULT_MAX_BODY_SIZE  # bytes, 0 = no limit
    app_protocol: str = "http"


def _basic_auth_app_id(request: web.Request) -> str | None:
    """``Authorization: Basic base64("dapr-app-id:<app-id>")`` (Dapr's second routing form)."""
    value = request.headers.get("Authorization", "")
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return password if user == APP_ID_HEADER and password else None


class HttpApi(MetadataEndpoints):
    def __init__(
        self,
        settings: ApiSettings,
        invoker: Invoker,
        *,
        identity: IdentityInfo = lambda: None,
        ready: Callable[[], bool] = lambda: True,
        outbound_ready: Callable[[], bool] = lambda: True,
        extended: dict[str, str] | None = None,
        metrics: SidecarMetrics | None = None,
    ) -> None:
        super().__init__(settings, identity, ready, outbound_ready, extended)
        self._metrics = metrics
        self._invoker = invoker
        self._budget = BodyBudget(budget_for(settings.max_body_size))
        self._targets: dict[str, Target] = {}  # app-id as written -> Target, parsed once

    def app(self) -> web.Application:
        cap = self._s.max_body_size
        # aiohttp's own cap backs ours up for bodies without a Content-Length (0 = none).
        app = web.Application(
            middlewares=[self._boundary], client_max_size=cap + 1 if cap else 2**63 - 1
        )
        app.router.add_get("/v1.0/healthz", self._healthz)
        app.router.add_get("/v1.0/healthz/outbound", self._healthz_outbound)
        app.router.add_get("/v1.0/metadata", self._metadata)
        app.router.add_put("/v1.0/metadata/{key}", self._set_metadata)
        app.router.add_route(
            "*",
            "/v1.0/invoke/{app_id}/method/{method:[\\s\\S]*}",
            self._invoke_path,
            expect_handler=self._expect,
        )
        app.router.add_route("*", "/{tail:[\\s\\S]*}", self._fallback, expect_handler=self._expect)
        return app

    async def _expect(self, request: web.Request) -> web.StreamResponse | None:
        """``Expect: 100-continue`` is answered here, never forwarded: a body over the cap gets
        its 413 before the client sends it."""
        if self._too_large(request.content_length):
            return self._body_too_large()
        if request.headers.get("Expect", "").lower() != "100-continue":
            return error_response(
                417,
                "ERR_MALFORMED_REQUEST",
                f"unsupported Expect header: {request.headers['Expect']!r}",
            )
        if request.version >= (1, 1):
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
        return None

    @web.middleware
    async def _boundary(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        """Dapr's HTTP server metrics around :meth:`_guarded` (as its ``HTTPMiddleware``)."""
        metrics = self._metrics
        if metrics is None:
            return await self._guarded(request, handler)
        start = time.perf_counter()
        response = await self._guarded(request, handler)
        body = response.body if isinstance(response, web.Response) else None
        metrics.http_served(
            request.method,
            request.path,
            response.status,
            max(request.content_length or 0, 0),
            len(body) if isinstance(body, bytes | bytearray) else 0,
            start,
        )
        return response

    async def _guarded(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        """The API token check, and the error boundary: every failure leaves as Dapr's JSON."""
        token = self._s.api_token
        if token is not None and request.path not in _TOKEN_EXEMPT:
            given = request.headers.get(API_TOKEN_HEADER, "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                return web.Response(
                    status=401, text="invalid api token\n", content_type="text/plain"
                )
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return self._body_too_large()
        except web.HTTPException as err:
            if err.status < 400:
                raise
            return error_response(err.status, "ERR_MALFORMED_REQUEST", err.reason)
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as err:
            log.error(
                "Unexpected error serving %s %s: %s: %s",
                request.method,
                request.path,
                type(err).__name__,
                err,
                exc_info=err,
            )
            return error_response(
                500, "ERR_INTERNAL", f"internal error: {type(err).__name__}: {err}"
            )

    def _too_large(self, length: int | None) -> bool:
        cap = self._s.max_body_size
        return bool(cap) and length is not None and length > cap

    def _body_too_large(self) -> web.Response:
        return error_response(
            413,
            "ERR_BODY_READ",
            f"failed to read request body: stream too large: the limit is "
            f"{self._s.max_body_size} bytes; raise it with --max-body-size",
        )

    async def _invoke_path(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get(APP_ID_HEADER) or _basic_auth_app_id(request):
            return await self._fallback(request)
        raw = request.raw_path.split("?", 1)[0]
        rest = raw[len("/v1.0/invoke/") :]
        app_part, sep, method = rest.partition("/method/")
        if not sep or not app_part:
            return self._no_target()
        return await self._invoke(request, unquote(app_part), method)

    async def _fallback(self, request: web.Request) -> web.StreamResponse:
        target = request.headers.get(APP_ID_HEADER) or _basic_auth_app_id(request)
        if not target:
            if request.path.startswith("/v1.0/invoke/"):
                return self._no_target()
            block = building_block(request.path)
            if block is not None:
                return error_response(
                    501,
                    "ERR_NOT_IMPLEMENTED",
                    f"{block} is not implemented: pysentry's daprd provides service invocation "
                    f"(/v1.0/invoke), metadata, health and mTLS only: {request.path}",
                )
            return error_response(404, "ERR_NOT_FOUND", f"route not found: {request.path}")
        raw = request.raw_path.split("?", 1)[0]
        return await self._invoke(request, target, raw.lstrip("/"))

    def _no_target(self) -> web.Response:
        return error_response(
            404,
            "ERR_DIRECT_INVOKE",
            "failed getting app id either from the URL path or the header dapr-app-id",
        )

    async def _invoke(self, request: web.Request, app_id: str, raw: str) -> web.StreamResponse:
        verb = request.method.upper()
        if self._too_large(request.content_length):
            return self._body_too_large()
        try:
            if verb not in VERBS:
                raise InvocationError(f"invalid HTTP verb: {verb}")
            try:
                method = canonical_method(raw)
            except InvalidMethod as err:
                raise InvocationError(str(err), status=400) from err
            target = self._targets.get(app_id)
            if target is None:
                target = Target.parse(app_id, default_namespace=self._s.namespace)
                if len(self._targets) >= MAX_TARGETS:
                    self._targets.clear()
                self._targets[app_id] = target
            reserve = request.content_length
            if reserve is None and request.body_exists:
                reserve = self._s.max_body_size or self._budget.capacity
            async with self._budget.reserve(reserve or 0, timeout_s=BODY_BUDGET_WAIT_S):
                body = await request.read()
                headers = tuple(
                    (low, v)
                    for k, v in request.headers.items()
                    if (low := k.lower()) not in _SKIP_REQUEST
                )
                invoke = InvokeRequest(
                    method=method,
                    verb=verb,
                    query=request.rel_url.raw_query_string,
                    content_type=request.headers.get("Content-Type", ""),
                    headers=headers,
                    body=body,
                )
                del body
                result = await self._invoker.invoke(target, invoke)
        except BudgetExhausted as err:
            log.warning("invoke %s refused: %s", app_id, err)
            return error_response(
                503, "ERR_DIRECT_INVOKE", f"failed to invoke, id: {app_id}, err: {err}"
            )
        except InvocationError as err:
            log.debug("invoke %s/%s failed: %s", app_id, raw, err)
            return error_response(
                err.status, "ERR_DIRECT_INVOKE", f"failed to invoke, id: {app_id}, err: {err}"
            )
        response = web.Response(status=result.status, body=result.body)
        for name, value in result.headers:
            if name not in _SKIP_RESPONSE:
                response.headers.add(name, value)
        if result.content_type:
            response.headers["Content-Type"] = result.content_type
        return response
