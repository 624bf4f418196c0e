"""The app-facing gRPC API: ``dapr.proto.runtime.v1.Dapr`` on ``--dapr-grpc-port``.

pysentry serves what it is for, as Dapr does it (``pkg/api/grpc``):

* ``InvokeService``: service invocation through the same path as the HTTP API (the same method
  normalization, mTLS hop and callee ACL). The app's headers come back as initial metadata with
  ``dapr-http-status``; a non-2xx status from an HTTP app becomes a gRPC error whose code follows
  Dapr's ``CodeFromHTTPStatus`` and whose message is the status text.
* ``GetMetadata`` and ``SetMetadata``, sharing the ``extended`` metadata with the HTTP API.

Every other RPC of Dapr's API (state, pub/sub, actors, workflows, ...) answers UNIMPLEMENTED
with a message that says so, instead of grpclib's bare "Method not found". With
``DAPR_API_TOKEN`` set, each call needs the ``dapr-api-token`` metadata (Dapr's messages).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Mapping, MutableMapping
from http import HTTPStatus
from typing import Any

from google.protobuf import empty_pb2
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server, Stream

from pysentry import RUNTIME_VERSION
from pysentry.config.method import canonical_method
from pysentry.errors import InvalidMethod
from pysentry.proto.dapr.proto.common.v1 import common_pb2
from pysentry.proto.dapr.proto.runtime.v1 import dapr_pb2
from pysentry.proto.dapr.proto.runtime.v1.dapr_grpc import DaprBase
from pysentry.sidecar.grpc_proxy import CallerProxy, with_fallback
from pysentry.sidecar.invocation import (
    HOP_BY_HOP,
    InvocationError,
    Invoker,
    InvokeRequest,
    Target,
)

log = logging.getLogger(__name__)

SERVICE = "/dapr.proto.runtime.v1.Dapr/"
API_TOKEN = "dapr-api-token"
_VERB_NAMES = dict(common_pb2.HTTPExtension.Verb.items())
_VERB_BY_NUMBER = {v: k for k, v in _VERB_NAMES.items()}
_SKIP_METADATA = frozenset({API_TOKEN, "content-type", "user-agent", "dapr-app-id"})
_SKIP_RESPONSE = HOP_BY_HOP | {"content-type", "content-length"}

#: Dapr's ``CodeFromHTTPStatus`` (``pkg/messaging/v1/util.go``): anything else is Unknown.
_CODE_FROM_HTTP = {
    400: Status.INTERNAL,
    401: Status.UNAUTHENTICATED,
    403: Status.PERMISSION_DENIED,
    404: Status.NOT_FOUND,
    408: Status.CANCELLED,
    409: Status.ALREADY_EXISTS,
    429: Status.RESOURCE_EXHAUSTED,
    500: Status.UNKNOWN,
    501: Status.UNIMPLEMENTED,
    503: Status.UNAVAILABLE,
    504: Status.DEADLINE_EXCEEDED,
}
_ERROR_CODE = {400: Status.INVALID_ARGUMENT, 403: Status.PERMISSION_DENIED, 503: Status.UNAVAILABLE}


def _valid_key(key: str) -> bool:
    return bool(key) and all(c.isascii() and (c.isalnum() or c in "-_.") for c in key)


class DaprApi(DaprBase):
    def __init__(
        self,
        *,
        app_id: str,
        namespace: str,
        invoker: Invoker,
        extended: MutableMapping[str, str],
        app_connection: Callable[[], tuple[int, str, str]],
        api_token: str | None = None,
        max_body_size: int = 0,
    ) -> None:
        self._app_id = app_id
        self._namespace = namespace
        self._invoker = invoker
        self._extended = extended
        self._app_connection = app_connection
        self._token = api_token
        self._max_body = max_body_size
        self._warned = False

    def check_token(self, metadata: Mapping[str, Any] | None) -> None:
        """Dapr's ``pkg/api/grpc/auth.go``."""
        if self._token is None:
            return
        given = (metadata or {}).get(API_TOKEN)
        if not given:
            raise GRPCError(Status.UNAUTHENTICATED, "missing api token in request metadata")
        if not hmac.compare_digest(str(given).encode(), self._token.encode()):
            raise GRPCError(Status.UNAUTHENTICATED, "authentication error: api token mismatch")

    async def InvokeService(self, stream: Stream[Any, Any]) -> None:
        self.check_token(stream.metadata)
        msg = await stream.recv_message()
        assert msg is not None
        if not self._warned:
            self._warned = True
            log.warning(
                "[DEPRECATION NOTICE] InvokeService is deprecated and will be removed in the "
                "future, please use proxy mode instead."
            )
        request = self._request(msg, stream.metadata or {})
        try:
            target = Target.parse(msg.id, default_namespace=self._namespace)
            result = await self._invoker.invoke(target, request)
        except InvocationError as err:
            code = _ERROR_CODE.get(err.status, Status.INTERNAL)
            raise GRPCError(code, f"failed to invoke, id: {msg.id}, err: {err}") from err
        metadata = [(k, v) for k, v in result.headers if k not in _SKIP_RESPONSE and _valid_key(k)]
        metadata.append(("dapr-http-status", str(result.status)))
        await stream.send_initial_metadata(metadata=metadata)
        if not 200 <= result.status < 300:
            code = _CODE_FROM_HTTP.get(result.status, Status.UNKNOWN)
            try:
                text = HTTPStatus(result.status).phrase
            except ValueError:
                text = ""
            raise GRPCError(code, text)
        response = common_pb2.InvokeResponse(content_type=result.content_type)
        response.data.value = result.body
        await stream.send_message(response)

    def _request(self, msg: dapr_pb2.InvokeServiceRequest, metadata: Mapping[str, Any]) -> Any:
        m = msg.message
        if self._max_body and len(m.data.value) > self._max_body:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"request body of {len(m.data.value)} bytes is over the limit of "
                f"{self._max_body} bytes; raise it with --max-body-size",
            )
        try:
            method = canonical_method(m.method, encoded=False)
        except InvalidMethod as err:
            raise GRPCError(Status.INVALID_ARGUMENT, str(err)) from err
        # No http_extension (the SDK's default): Dapr's HTTP callee refuses the call; a user
        # expects it to work, so it goes as POST (docs/choices.md).
        verb = "POST"
        if m.HasField("http_extension") and m.http_extension.verb:
            verb = _VERB_BY_NUMBER[m.http_extension.verb]
        headers = tuple(
            (str(k).lower(), str(v))
            for k, v in metadata.items()
            if str(k).lower() not in _SKIP_METADATA and not str(k).endswith("-bin")
        )
        return InvokeRequest(
            method=method,
            verb=verb,
            query=m.http_extension.querystring if m.HasField("http_extension") else "",
            content_type=m.content_type,
            headers=headers,
            body=m.data.value,
        )

    async def GetMetadata(self, stream: Stream[Any, Any]) -> None:
        self.check_token(stream.metadata)
        await stream.recv_message()
        port, protocol, address = self._app_connection()
        response = dapr_pb2.GetMetadataResponse(
            id=self._app_id,
            runtime_version=RUNTIME_VERSION,
            app_connection_properties=dapr_pb2.AppConnectionProperties(
                port=port, protocol=protocol, channel_address=address
            ),
        )
        response.extended_metadata.update(self._extended)
        response.extended_metadata["daprRuntimeVersion"] = RUNTIME_VERSION
        response.extended_metadata["namespace"] = self._namespace
        await stream.send_message(response)

    async def SetMetadata(self, stream: Stream[Any, Any]) -> None:
        self.check_token(stream.metadata)
        msg = await stream.recv_message()
        assert msg is not None
        self._extended[msg.key] = msg.value
        await stream.send_message(empty_pb2.Empty())

    async def Shutdown(self, stream: Stream[Any, Any]) -> None:
        self.check_token(stream.metadata)
        raise GRPCError(
            Status.UNIMPLEMENTED,
            "Shutdown is not implemented by pysentry: stop daprd with SIGTERM (or `dapr stop`)",
        )

    def unimplemented(self, path: str) -> Handler:
        name = path[len(SERVICE) :]

        async def refuse(stream: Stream[Any, Any]) -> None:
            self.check_token(stream.metadata)
            raise GRPCError(
                Status.UNIMPLEMENTED,
                f"{name} is not implemented: pysentry's daprd provides service invocation "
                "(InvokeService), metadata (GetMetadata, SetMetadata) and mTLS only",
            )

        return Handler(refuse, Cardinality.UNARY_UNARY, empty_pb2.Empty, empty_pb2.Empty)


def api_server(api: DaprApi, proxy: CallerProxy | None = None) -> Server:
    """The gRPC API server: Dapr's RPCs, a clear UNIMPLEMENTED for the ones pysentry lacks, and
    every other method proxied to the app named by ``dapr-app-id``."""

    def fallback(path: str) -> Handler | None:
        if path.startswith(SERVICE):
            return api.unimplemented(path)
        return proxy.handler(path) if proxy is not None else None

    return with_fallback(Server([api]), fallback)
