"""Dialling other sidecars: one gRPC channel per (address, app-id, namespace), reused.

With mTLS the :data:`ChannelFactory` builds ``SpiffeChannel``s: each *new* connection takes the
current client TLS context, so a rotated SVID or a reloaded anchor set applies to new handshakes
while established connections carry on; right after the handshake, and before any request byte
is sent, the peer's SPIFFE ID path must be ``/ns/<ns>/<app-id>`` (any trust domain), else the
connection is closed. Without mTLS the hop is plaintext.

``max_connection_age`` (pysentry addition, off by default) recycles a channel older than that:
new calls open a new connection, the old one closes once its in-flight calls are done. This
makes rotated certificates and reloaded anchors reach long-lived peer pairs too.

``CallLocalStream`` is tried first; a peer answering UNIMPLEMENTED gets unary ``CallLocal`` from
then on (as daprd does).

:class:`GrpcInvoker` is the gRPC transport (a :class:`~pysentry.sidecar.invoker.RemoteInvoker`);
with a ``fastpath`` dialer, :class:`InternalClient` speaks ``pysentry-invoke/2`` to peers that
negotiate it by ALPN and gRPC to the rest (:mod:`.fastpath_client`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from pysentry.errors import PeerRejected
from pysentry.proto.dapr.proto.internals.v1.service_invocation_grpc import ServiceInvocationStub
from pysentry.sidecar import messages
from pysentry.sidecar.fastpath_client import FastpathDialer, FastpathInvoker
from pysentry.sidecar.invocation import InvocationError, InvokeRequest, InvokeResponse, Target
from pysentry.sidecar.invoker import RemoteInvoker, split_address

log = logging.getLogger(__name__)

#: Makes the channel for one (host, port, target). With mTLS this is a
#: ``pysentry.security.channel.SpiffeChannel`` that takes the current client context for each new
#: connection and authorizes the peer's ID path ``/ns/<ns>/<app-id>`` before any request is sent.
ChannelFactory = Callable[[str, int, Target], Channel]

DEFAULT_TIMEOUT_S = 60.0
_RETRIES = 3


def plaintext_channel(host: str, port: int, target: Target) -> Channel:
    """The mTLS-off dialer."""
    return Channel(host, port)


@dataclass(slots=True)
class _Entry:
    channel: Channel
    created: float
    stub: ServiceInvocationStub
    inflight: int = 0
    retired: bool = False

    def retire(self) -> None:
        self.retired = True
        if self.inflight == 0:
            self.channel.close()


class GrpcInvoker:
    """Calls ``ServiceInvocation`` on other sidecars over gRPC."""

    def __init__(
        self,
        *,
        channel_factory: ChannelFactory = plaintext_channel,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_connection_age: timedelta | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = channel_factory
        self._timeout_s = timeout_s
        self._max_age = max_connection_age.total_seconds() if max_connection_age else None
        self._clock = clock
        self._channels: dict[tuple[str, Target], _Entry] = {}
        self._unary_only: set[str] = set()
        self.recycled = 0

    def _entry(self, address: str, target: Target) -> _Entry:
        key = (address, target)
        entry = self._channels.get(key)
        max_age = self._max_age
        if entry is not None and max_age is not None and self._clock() - entry.created > max_age:
            # Recycle: new calls get a new channel (a new handshake with the current
            # identity and anchors); the old one closes when its last call is done.
            del self._channels[key]
            entry.retire()
            self.recycled += 1
            entry = None
        if entry is None:
            host, port = split_address(address)
            channel = self._factory(host, port, target)
            entry = _Entry(channel, self._clock(), ServiceInvocationStub(channel))
            self._channels[key] = entry
        return entry

    def adopt(
        self, address: str, target: Target, transport: asyncio.Transport, early: Sequence[bytes]
    ) -> None:
        """Run the channel to ``address`` on an open, verified TLS connection that chose h2."""
        channel = self._entry(address, target).channel
        if channel._connected:  # grpclib internals, pinned (as SpiffeChannel)
            transport.close()
            return
        protocol = channel._protocol_factory()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        for data in early:
            protocol.data_received(data)
        channel._protocol = protocol

    def discard(self, address: str, target: Target) -> None:
        entry = self._channels.pop((address, target), None)
        if entry is not None:
            entry.channel.close()

    async def call(self, address: str, target: Target, request: InvokeRequest) -> InvokeResponse:
        """One attempt. Raises GRPCError, PeerRejected or OSError-family errors unchanged."""
        entry = self._entry(address, target)
        entry.inflight += 1
        try:
            return await self._call(entry.stub, address, request)
        finally:
            entry.inflight -= 1
            if entry.retired and entry.inflight == 0:
                entry.channel.close()

    async def _call(
        self, stub: ServiceInvocationStub, address: str, request: InvokeRequest
    ) -> InvokeResponse:
        if address not in self._unary_only:
            try:
                return await self._call_stream(stub, request)
            except GRPCError as err:
                if err.status is not Status.UNIMPLEMENTED:
                    raise
                log.debug("peer %s does not implement CallLocalStream; using CallLocal", address)
                self._unary_only.add(address)
        reply = await stub.CallLocal(messages.request_to_proto(request), timeout=self._timeout_s)
        return messages.response_from_proto(reply)

    async def _call_stream(
        self, stub: ServiceInvocationStub, request: InvokeRequest
    ) -> InvokeResponse:
        outgoing = list(messages.request_stream(request))
        async with stub.CallLocalStream.open(timeout=self._timeout_s) as stream:
            for i, msg in enumerate(outgoing):
                await stream.send_message(msg, end=i == len(outgoing) - 1)
            first = await stream.recv_message()
            if first is None:
                # The callee ended the stream without a message: its status is in the
                # trailers (ACL denial, app channel failure, ...). Raise exactly that.
                await stream.recv_trailing_metadata()
                # An OK status with no message is what Go's RecvMsg reports as io.EOF.
                raise InvocationError("EOF")
            if not first.HasField("response") or not first.response.HasField("status"):
                raise InvocationError(
                    "response does not contain the required fields in the leading chunk"
                )
            body = messages.PayloadAssembler()
            if first.HasField("payload"):
                body.add(first.payload)
            async for part in stream:
                body.add(part.payload)
            return messages.response_from_proto(first.response, body.body())

    def close(self) -> None:
        for entry in self._channels.values():
            entry.channel.close()
        self._channels.clear()


class InternalClient:
    """Calls other sidecars: one attempt through a :class:`RemoteInvoker`, retries, Dapr's errors.

    ``fastpath``: speak ``pysentry-invoke/2`` to the peers that agree to it (ALPN), gRPC to the
    others; without it, gRPC only.
    """

    def __init__(
        self,
        *,
        channel_factory: ChannelFactory = plaintext_channel,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_connection_age: timedelta | None = None,
        clock: Callable[[], float] = time.monotonic,
        fastpath: FastpathDialer | None = None,
    ) -> None:
        self.grpc = GrpcInvoker(
            channel_factory=channel_factory,
            timeout_s=timeout_s,
            max_connection_age=max_connection_age,
            clock=clock,
        )
        self.fastpath: FastpathInvoker | None = None
        self._remote: RemoteInvoker = self.grpc
        if fastpath is not None:
            self.fastpath = FastpathInvoker(
                fastpath,
                self.grpc,
                timeout_s=timeout_s,
                max_connection_age=max_connection_age,
                clock=clock,
            )
            self._remote = self.fastpath

    @property
    def recycled(self) -> int:
        """Connections retired for their age (both transports)."""
        fast = self.fastpath.recycled if self.fastpath is not None else 0
        return self.grpc.recycled + fast

    async def call(self, address: str, target: Target, request: InvokeRequest) -> InvokeResponse:
        return await self._remote.call(address, target, request)

    def discard(self, address: str, target: Target) -> None:
        self._remote.discard(address, target)

    async def invoke(
        self,
        resolve: Callable[[], str],
        target: Target,
        request: InvokeRequest,
        *,
        forget: Callable[[], None] | None = None,
    ) -> InvokeResponse:
        """Resolve, call, and retry connection-level failures with a fresh channel."""
        last: Exception | None = None
        for attempt in range(_RETRIES):
            address = resolve()
            try:
                return await self.call(address, target, request)
            except PeerRejected as err:
                self.discard(address, target)
                raise InvocationError(
                    f"connection error: authentication handshake failed: {err}"
                ) from err
            except GRPCError as err:
                status = 403 if err.status is Status.PERMISSION_DENIED else 500
                if err.status is Status.UNAVAILABLE and attempt + 1 < _RETRIES:
                    last = err
                    self.discard(address, target)
                    if forget is not None:
                        forget()
                    continue
                raise InvocationError(messages.go_error_text(err), status=status) from err
            except TimeoutError as err:
                # This call's deadline: it was cancelled on its own stream (CANCEL frame, h2
                # RST_STREAM), the connection is sound and other calls share it. Not retried.
                last = err
                log.debug("call to %s timed out (attempt %d)", address, attempt + 1)
                break
            except (OSError, StreamTerminatedError, ssl.SSLError) as err:
                last = err
                log.debug("call to %s failed (attempt %d): %r", address, attempt + 1, err)
                self.discard(address, target)
                if forget is not None:
                    forget()  # re-read name resolution: the peer may have moved
        raise InvocationError(f"connection error: {last!s} ({type(last).__name__})") from last

    def close(self) -> None:
        self._remote.close()
