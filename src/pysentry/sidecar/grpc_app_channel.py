"""The app channel to a gRPC app (``--app-protocol grpc``): ``AppCallback/OnInvoke``.

As Dapr's ``pkg/channel/grpc``: the invocation becomes a ``common.v1.InvokeRequest`` (method,
``data`` as an ``Any`` holding the body, content type, ``http_extension``), the forwarded headers
become gRPC metadata (plus ``dapr-api-token`` with ``APP_API_TOKEN``), and the app's initial
metadata comes back as response headers.

A gRPC status from the app is turned into the HTTP-shaped answer the rest of the sidecar
carries: the status of Dapr's ``HTTPStatusFromCode`` and a JSON body
``{"code": <grpc code>, "message": <details>}``, which is what Dapr's HTTP API answers for a gRPC
callee.
"""

from __future__ import annotations

import json
import logging

from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from pysentry.proto.dapr.proto.common.v1 import common_pb2
from pysentry.proto.dapr.proto.runtime.v1.appcallback_grpc import AppCallbackStub
from pysentry.sidecar.invocation import (
    InvocationError,
    InvokeRequest,
    InvokeResponse,
    only_forwardable,
)

log = logging.getLogger(__name__)

#: grpc-gateway's ``HTTPStatusFromCode``, as Dapr uses it.
HTTP_FROM_CODE = {
    Status.OK: 200,
    Status.CANCELLED: 408,
    Status.UNKNOWN: 500,
    Status.INVALID_ARGUMENT: 400,
    Status.DEADLINE_EXCEEDED: 504,
    Status.NOT_FOUND: 404,
    Status.ALREADY_EXISTS: 409,
    Status.PERMISSION_DENIED: 403,
    Status.UNAUTHENTICATED: 401,
    Status.RESOURCE_EXHAUSTED: 429,
    Status.FAILED_PRECONDITION: 400,
    Status.ABORTED: 409,
    Status.OUT_OF_RANGE: 400,
    Status.UNIMPLEMENTED: 501,
    Status.INTERNAL: 500,
    Status.UNAVAILABLE: 503,
    Status.DATA_LOSS: 500,
}
_VERBS = dict(common_pb2.HTTPExtension.Verb.items())
_SKIP = frozenset({"content-type", "content-length", "user-agent"})


def _metadata_key(key: str) -> bool:
    return bool(key) and all(c.isascii() and (c.isalnum() or c in "-_.") for c in key)


class GrpcAppChannel:
    """Plaintext (h2c) gRPC client to the local app. Create inside the running loop."""

    def __init__(
        self,
        port: int,
        *,
        address: str = "127.0.0.1",
        app_api_token: str | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self._channel = Channel(address, port)
        self._stub = AppCallbackStub(self._channel)
        self._token = app_api_token
        self._timeout = timeout_s
        self.base_url = f"grpc://{address}:{port}"

    @property
    def channel(self) -> Channel:
        """The connection to the app, shared with gRPC proxying."""
        return self._channel

    async def call(self, request: InvokeRequest) -> InvokeResponse:
        message = common_pb2.InvokeRequest(method=request.method, content_type=request.content_type)
        message.data.value = request.body
        message.http_extension.verb = _VERBS[request.verb]  # type: ignore[assignment]
        message.http_extension.querystring = request.query
        metadata = [
            (k, v)
            for k, v in only_forwardable(request.headers)
            if k not in _SKIP and _metadata_key(k) and not k.startswith("grpc-")
        ]
        if self._token is not None:
            metadata.append(("dapr-api-token", self._token))
        try:
            async with self._stub.OnInvoke.open(metadata=metadata, timeout=self._timeout) as stream:
                await stream.send_message(message, end=True)
                try:
                    reply = await stream.recv_message()
                except GRPCError as err:
                    return self._status(err)
                headers = tuple(
                    (str(k).lower(), str(v))
                    for k, v in (stream.initial_metadata or {}).items()
                    if not str(k).endswith("-bin")
                )
        except GRPCError as err:
            return self._status(err)
        except (OSError, StreamTerminatedError, TimeoutError) as err:
            log.debug("gRPC app channel call failed: method=%s err=%s", request.method, err)
            raise InvocationError(
                f"error invoking app channel: {err or type(err).__name__}"
            ) from err
        assert reply is not None
        return InvokeResponse(
            status=200, headers=headers, content_type=reply.content_type, body=reply.data.value
        )

    @staticmethod
    def _status(err: GRPCError) -> InvokeResponse:
        body = {"code": err.status.value, "message": err.message or ""}
        return InvokeResponse(
            status=HTTP_FROM_CODE.get(err.status, 500),
            content_type="application/json",
            body=json.dumps(body).encode(),
        )

    async def close(self) -> None:
        self._channel.close()
