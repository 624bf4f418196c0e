"""gRPC proxying: a gRPC app calls another app's own gRPC service through its sidecar.

As Dapr's ``pkg/messaging/grpc_proxy.go``: the app sends any gRPC call
(``/helloworld.Greeter/SayHello``) to its sidecar's gRPC API port with metadata
``dapr-app-id: <target>``. The caller's sidecar resolves the target and relays the call, bytes
untouched, over the same mutual-TLS connection as service invocation, adding
``dapr-caller-app-id`` and ``dapr-callee-app-id``. The callee's sidecar sees a method its internal
server does not serve with ``dapr-callee-app-id`` set to itself: it applies access control to the
caller's verified SPIFFE ID (operation = the full method name, no verb, as Dapr does), stamps the
caller identity from that ID, and relays the call to its gRPC app. Messages, metadata, status and
streaming in both directions pass through (:func:`pysentry.sidecar.relay.relay`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from grpclib.client import Channel
from grpclib.const import Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server
from grpclib.server import Stream as ServerStream

from pysentry.sidecar.invocation import (
    CALLEE_APP_ID,
    CALLER_APP_ID,
    CALLER_NAMESPACE,
    IDENTITY_HEADERS,
    InvocationError,
    Target,
)
from pysentry.sidecar.metrics import STREAMING, UNARY, SidecarMetrics
from pysentry.sidecar.policy import AccessPolicy, DecisionHook
from pysentry.sidecar.relay import relay, relay_handler
from pysentry.spiffe import SpiffeId

log = logging.getLogger(__name__)

APP_ID = "dapr-app-id"
API_TOKEN = "dapr-api-token"
_NOT_RELAYED = frozenset({API_TOKEN, APP_ID, "user-agent", "content-type", "te"})
#: Dapr's ``dapr-stream`` metadata: a truthy value marks a proxied call as a stream.
STREAM_FLAG = "dapr-stream"
_TRUTHY = frozenset({"y", "yes", "true", "t", "on", "1"})


class Resolver(Protocol):
    def resolve(self, app_id: str, namespace: str) -> str: ...


HandlerFor = Callable[[str], Handler | None]


class FallbackMapping(dict[str, Handler]):
    """grpclib's method table with a handler for paths it does not know (looked up by .get)."""

    def __init__(self, base: Mapping[str, Handler], fallback: HandlerFor) -> None:
        super().__init__(base)
        self._fallback = fallback

    def get(self, key: str, default: Any = None) -> Any:
        found = super().get(key)
        if found is None:
            found = self._fallback(key)
        return found if found is not None else default


def with_fallback(server: Server, fallback: HandlerFor) -> Server:
    server._mapping = FallbackMapping(server._mapping, fallback)
    return server


def _metadata(stream: ServerStream[Any, Any]) -> list[tuple[str, str]]:
    out = []
    for key, value in (stream.metadata or {}).items():
        if key in _NOT_RELAYED or key.startswith(":") or key.startswith("grpc-"):
            continue
        out.append((key, value if isinstance(value, str) else value.decode("latin-1")))
    return out


class CallerProxy:
    """The app-facing side: calls with ``dapr-app-id`` go to the target's sidecar (or, for the
    sidecar's own app-id, straight to the local gRPC app)."""

    def __init__(
        self,
        *,
        app_id: str,
        namespace: str,
        resolver: Resolver,
        dial: Callable[[str, int, Target], Channel],
        local: Channel | None,
        check_token: Callable[[Mapping[str, Any] | None], None],
        metrics: SidecarMetrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._app_id = app_id
        self._namespace = namespace
        self._resolver = resolver
        self._dial = dial
        self._local = local
        self._check_token = check_token
        self._channels: dict[tuple[str, Target], Channel] = {}

    def handler(self, path: str) -> Handler:
        async def proxy(stream: ServerStream[Any, Any]) -> None:
            self._check_token(stream.metadata)
            await self._proxy(stream, path)

        return relay_handler(proxy)

    async def _proxy(self, stream: ServerStream[Any, Any], path: str) -> None:
        md: Mapping[str, Any] = stream.metadata or {}
        target_id = md.get(CALLEE_APP_ID) or md.get(APP_ID)
        if not target_id:
            raise GRPCError(
                Status.UNKNOWN,
                f"failed to proxy request: required metadata {CALLEE_APP_ID} or {APP_ID} not "
                f"found (method {path!r} is not served by daprd; set {APP_ID} to proxy it)",
            )
        try:
            target = Target.parse(str(target_id), default_namespace=self._namespace)
        except InvocationError as err:
            raise GRPCError(Status.INVALID_ARGUMENT, f"failed to proxy request: {err}") from err
        metadata = [(k, v) for k, v in _metadata(stream) if k not in IDENTITY_HEADERS]
        if target == Target(self._app_id, self._namespace):
            if self._local is None:
                raise GRPCError(
                    Status.UNAVAILABLE, "failed to proxy request: no gRPC app (--app-protocol grpc)"
                )
            await self._relay(stream, self._local, path, metadata, str(target_id))
            return
        try:
            address = await asyncio.to_thread(
                self._resolver.resolve, target.app_id, target.namespace
            )
        except InvocationError as err:
            raise GRPCError(Status.UNAVAILABLE, f"failed to proxy request: {err}") from err
        metadata += [(CALLER_APP_ID, self._app_id), (CALLEE_APP_ID, target.app_id)]
        await self._relay(stream, self._channel(address, target), path, metadata, str(target_id))

    async def _relay(
        self,
        stream: ServerStream[Any, Any],
        channel: Channel,
        path: str,
        metadata: list[tuple[str, str]],
        target_id: str,
    ) -> None:
        """:func:`relay`, counted as Dapr's proxy does: a request sent (``type`` from the
        ``dapr-stream`` metadata) and, for a unary call, the response's gRPC code and latency."""
        metrics = self._metrics
        if metrics is None:
            await relay(stream, channel, path, metadata)
            return
        md: Mapping[str, Any] = stream.metadata or {}
        flag = md.get(STREAM_FLAG, "")
        streaming = str(flag).lower() in _TRUTHY
        metrics.request_sent(target_id, STREAMING if streaming else UNARY)
        start = time.perf_counter()
        code = 0
        try:
            await relay(stream, channel, path, metadata)
        except GRPCError as err:
            code = err.status.value
            raise
        except BaseException:
            code = Status.UNKNOWN.value
            raise
        finally:
            if not streaming:
                metrics.response_received(target_id, code, start)

    def _channel(self, address: str, target: Target) -> Channel:
        key = (address, target)
        channel = self._channels.get(key)
        if channel is None:
            host, _, port = address.rpartition(":")
            channel = self._channels[key] = self._dial(host.strip("[]"), int(port), target)
        return channel

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()


class CalleeProxy:
    """The internal (mTLS) side: a proxied call for this sidecar's app goes to the gRPC app."""

    def __init__(
        self,
        *,
        app_id: str,
        local: Channel | None,
        identify: Callable[[ServerStream[Any, Any]], SpiffeId | None] | None,
        acl: AccessPolicy | None,
        app_api_token: str | None = None,
        on_decision: DecisionHook | None = None,
    ) -> None:
        self._on_decision = on_decision
        self._app_id = app_id
        self._local = local
        self._identify = identify
        self._acl = acl
        self._token = app_api_token

    def set_identifier(self, identify: Callable[[ServerStream[Any, Any]], SpiffeId | None]) -> None:
        self._identify = identify

    def handler(self, path: str) -> Handler | None:
        async def proxy(stream: ServerStream[Any, Any]) -> None:
            await self._proxy(stream, path)

        return relay_handler(proxy)

    async def _proxy(self, stream: ServerStream[Any, Any], path: str) -> None:
        md: Mapping[str, Any] = stream.metadata or {}
        callee = md.get(CALLEE_APP_ID) or md.get(APP_ID)
        if callee != self._app_id:
            raise GRPCError(
                Status.UNIMPLEMENTED,
                f"Method not found: {path!r} (a proxied call needs {CALLEE_APP_ID}: "
                f"{self._app_id!r})",
            )
        caller = self._identify(stream) if self._identify is not None else None
        if self._identify is not None and caller is None:
            raise GRPCError(Status.UNAUTHENTICATED, "mTLS required: no verified client SPIFFE ID")
        if self._acl is not None:
            decision = self._acl.evaluate(caller, path, "NONE")
            if self._on_decision is not None:
                self._on_decision(caller, decision)
            if not decision.allowed:
                raise GRPCError(Status.PERMISSION_DENIED, decision.reason)
        if self._local is None:
            raise GRPCError(
                Status.UNAVAILABLE, "failed to proxy request: no gRPC app (--app-protocol grpc)"
            )
        metadata = [(k, v) for k, v in _metadata(stream) if k not in IDENTITY_HEADERS]
        if caller is not None and caller.app_id and caller.namespace:
            metadata += [(CALLER_APP_ID, caller.app_id), (CALLER_NAMESPACE, caller.namespace)]
        metadata.append((CALLEE_APP_ID, self._app_id))
        if self._token is not None:
            metadata.append((API_TOKEN, self._token))
        await relay(stream, self._local, path, metadata)
