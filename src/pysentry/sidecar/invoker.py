"""The caller's seam to another sidecar, whatever the transport (gRPC or ``pysentry-invoke/2``).

:class:`pysentry.sidecar.internal_client.InternalClient` retries and maps errors to Dapr's
answers; a :class:`RemoteInvoker` makes one attempt. Every transport reports a failure the same
way, so that the caller's HTTP API answers byte for byte the same whichever one carried the call:

* the callee's refusal or failure: ``grpclib.exceptions.GRPCError`` with the status code and
  message the gRPC path produces (``PERMISSION_DENIED`` + Dapr's ACL text, ``INTERNAL`` + the app
  channel's error, ...);
* the peer's certificate or SPIFFE ID not accepted: :class:`pysentry.errors.PeerRejected`;
* the connection failed or was lost: ``OSError``, ``ssl.SSLError`` or
  ``grpclib.exceptions.StreamTerminatedError``;
* the deadline passed: ``TimeoutError``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from pysentry.sidecar.invocation import InvocationError, InvokeRequest, InvokeResponse, Target


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``) as (host, port)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise InvocationError(f"invalid address: {address!r}")
    return host.strip("[]"), int(port)


class RemoteInvoker(Protocol):
    async def call(self, address: str, target: Target, request: InvokeRequest) -> InvokeResponse:
        """One attempt at ``address`` (``host:port``), raising the errors listed above."""
        ...

    def discard(self, address: str, target: Target) -> None:
        """Forget the connection to ``address`` (the next call dials anew)."""

    def close(self) -> None:
        """Close every connection."""


class AdoptingInvoker(RemoteInvoker, Protocol):
    """A transport that can take over a TLS connection some other dialer opened and verified
    (the fast path's, when the peer chose ``h2``), so that the peer sees one connection."""

    def adopt(
        self, address: str, target: Target, transport: asyncio.Transport, early: Sequence[bytes]
    ) -> None:
        """Use ``transport`` (the peer's ID already checked; ``early``: bytes it has sent) for
        the next calls to ``address``, or close it if a connection is already there."""
