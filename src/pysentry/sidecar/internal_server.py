"""The internal gRPC server: ``dapr.proto.internals.v1.ServiceInvocation`` (spec §10, §11).

With mTLS on, the server is a ``pysentry.security.channel.SpiffeServer``: the listener requires
a client certificate chaining to the anchors and each connection's SVID is checked when it
opens (a bad one is closed before any RPC). Each stream's verified caller SPIFFE ID
(:data:`PeerIdentifier`) drives access control and the caller identity stamped for the app.
A call the ACL admits counts ``dapr_runtime_service_invocation_req_recv_total`` and, when it
ends, ``..._res_sent_total`` with the app's status (13, Internal, when the app channel failed),
labelled with the caller's ``dapr-caller-app-id``, as Dapr's ``CallLocal``. Actor methods answer
UNIMPLEMENTED.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from pysentry.proto.dapr.proto.internals.v1.service_invocation_grpc import ServiceInvocationBase
from pysentry.sidecar import messages
from pysentry.sidecar.invocation import (
    CALLER_APP_ID,
    AppChannel,
    InvocationError,
    InvokeRequest,
    InvokeResponse,
)
from pysentry.sidecar.metrics import SidecarMetrics
from pysentry.sidecar.policy import (
    INVALID_ARGUMENT,
    PERMISSION_DENIED,
    AccessPolicy,
    CalleePolicy,
    DecisionHook,
    Refused,
)
from pysentry.spiffe import SpiffeId

log = logging.getLogger(__name__)

#: The verified SPIFFE ID of a stream's client (``SpiffeServer.peer_id``), None without mTLS.
PeerIdentifier = Callable[[Stream[Any, Any]], SpiffeId | None]

#: The UNAUTHENTICATED message for a TLS client without a verified SVID.
NO_CLIENT_ID = "mTLS required: no verified client SPIFFE ID"

_REFUSAL_STATUS = {
    INVALID_ARGUMENT: Status.INVALID_ARGUMENT,
    PERMISSION_DENIED: Status.PERMISSION_DENIED,
}


class ServiceInvocation(ServiceInvocationBase):
    """Serves CallLocal and CallLocalStream for the local app."""

    def __init__(
        self,
        app: AppChannel,
        *,
        app_id: str,
        identify: PeerIdentifier | None = None,
        acl: AccessPolicy | None = None,
        on_decision: DecisionHook | None = None,
        metrics: SidecarMetrics | None = None,
    ) -> None:
        self._app = app
        self._metrics = metrics
        self._identify = identify
        self._policy = CalleePolicy(app_id=app_id, acl=acl, on_decision=on_decision)

    # --- identity -------------------------------------------------------------------------
    def set_identifier(self, identify: PeerIdentifier) -> None:
        """Attach the server's peer lookup (the server is built after its handlers)."""
        self._identify = identify

    def _caller_id(self, stream: Stream[Any, Any]) -> SpiffeId | None:
        if self._identify is None:
            return None
        caller = self._identify(stream)
        if caller is None:
            raise GRPCError(Status.UNAUTHENTICATED, NO_CLIENT_ID)
        return caller

    async def _handle(self, stream: Stream[Any, Any], request: InvokeRequest) -> InvokeResponse:
        return await self.handle(self._caller_id(stream), request)

    async def handle(self, caller: SpiffeId | None, request: InvokeRequest) -> InvokeResponse:
        """Policy, metrics and the app call for one request from ``caller``, whatever the
        transport (this gRPC servicer or :mod:`.fastpath_server`); refusals and failures are
        the ``GRPCError`` the call ends with."""
        try:
            admitted = self._policy.admit(caller, request)
        except Refused as err:
            raise GRPCError(_REFUSAL_STATUS[err.code], str(err)) from err
        metrics = self._metrics
        if metrics is None:
            try:
                return await self._app.call(admitted)
            except InvocationError as err:
                raise GRPCError(Status.INTERNAL, str(err)) from err
        caller_app = next((v for k, v in admitted.headers if k == CALLER_APP_ID), "unknown")
        metrics.request_received(caller_app)
        status = Status.INTERNAL.value
        try:
            response = await self._app.call(admitted)
            status = response.status
            return response
        except InvocationError as err:
            raise GRPCError(Status.INTERNAL, str(err)) from err
        finally:
            metrics.response_sent(caller_app, status)

    # --- RPCs -----------------------------------------------------------------------------
    async def CallLocal(
        self, stream: Stream[messages.InternalInvokeRequest, messages.InternalInvokeResponse]
    ) -> None:
        msg = await stream.recv_message()
        if msg is None:
            raise GRPCError(Status.INVALID_ARGUMENT, "invalid request: no message")
        response = await self._handle(stream, messages.request_from_proto(msg))
        await stream.send_message(messages.response_to_proto(response))

    async def CallLocalStream(
        self, stream: Stream[messages.RequestStream, messages.ResponseStream]
    ) -> None:
        first = await stream.recv_message()
        if first is None or not first.HasField("request"):
            raise GRPCError(
                Status.INVALID_ARGUMENT, "invalid request: first message has no request"
            )
        body = messages.PayloadAssembler()
        if first.HasField("payload"):
            body.add(first.payload)
        async for part in stream:
            body.add(part.payload)
        request = messages.request_from_proto(first.request, body.body())
        response = await self._handle(stream, request)
        for out in messages.response_stream(response):
            await stream.send_message(out)

    async def CallActor(self, stream: Stream[Any, Any]) -> None:
        raise GRPCError(Status.UNIMPLEMENTED, "actors are not supported by pysentry")

    async def CallActorReminder(self, stream: Stream[Any, Any]) -> None:
        raise GRPCError(Status.UNIMPLEMENTED, "actors are not supported by pysentry")

    async def CallActorStream(self, stream: Stream[Any, Any]) -> None:
        raise GRPCError(Status.UNIMPLEMENTED, "actors are not supported by pysentry")
