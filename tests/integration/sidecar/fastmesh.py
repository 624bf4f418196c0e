"""In-process pieces for the fast-path tests: real mTLS on loopback, one process.

* :func:`callee`: app B (``tests/apps/http_app.py`` or a given app) behind B's internal server,
  a ``FastpathServer`` (ALPN ``pysentry-invoke/2`` then ``h2``) or, with ``fastpath=False``, the
  plain gRPC ``SpiffeServer``.
* :func:`caller`: A's ``InternalClient`` with or without the fast-path dialer, and A's HTTP API
  in front of it, so the answers a user sees can be compared byte for byte.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
from aiohttp import web

from pysentry.security.anchors import StaticAnchors
from pysentry.security.channel import SpiffeServer
from pysentry.security.identity import X509Svid
from pysentry.sidecar.app_channel import HttpAppChannel
from pysentry.sidecar.direct import DirectMessaging
from pysentry.sidecar.fastpath_protocol import max_payload
from pysentry.sidecar.http_api import ApiSettings, HttpApi
from pysentry.sidecar.internal_client import InternalClient
from pysentry.sidecar.internal_server import ServiceInvocation
from pysentry.sidecar.mtls import Identity, channel_factory, fastpath_dialer, internal_server
from pysentry.testing import TestCA
from tests.apps.http_app import build
from tests.integration.sidecar.conftest import serve

BODY_LIMIT = 512 << 10  # the callers' --max-body-size (below aiohttp's large-body warning)
FRAME_LIMIT = max_payload(BODY_LIMIT)


def svid(ca: TestCA, app: str, ns: str = "default", td: str = "public") -> X509Svid:
    chain, key = ca.issue_svid(f"spiffe://{td}/ns/{ns}/{app}", ttl=timedelta(hours=1))
    return X509Svid.from_chain(chain, key)


@dataclass
class Callee:
    address: str
    identity: Identity
    server: SpiffeServer
    app_runner: web.AppRunner


@asynccontextmanager
async def callee(
    ca: TestCA,
    *,
    app_id: str = "appB",
    acl: Any = None,
    fastpath: bool = True,
    offer_fastpath: bool | None = None,
    frame_limit: int = FRAME_LIMIT,
    app: web.Application | None = None,
) -> AsyncIterator[Callee]:
    """``offer_fastpath=False``: a ``FastpathServer`` whose listener offers only ``h2``."""
    runner, app_port = await serve(app or build())
    channel = HttpAppChannel(app_port)
    anchors = StaticAnchors.from_pem(ca.anchors_pem())
    offer = fastpath if offer_fastpath is None else offer_fastpath
    identity = Identity(svid(ca, app_id), anchors, fastpath=offer)
    service = ServiceInvocation(channel, app_id=app_id, acl=acl)
    server = internal_server(
        service, anchors, fastpath_max_payload=frame_limit if fastpath else None
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    await server.start(sock=sock, ssl=identity.server.listener)
    try:
        yield Callee(f"127.0.0.1:{sock.getsockname()[1]}", identity, server, runner)
    finally:
        server.close()
        await server.wait_closed()
        await channel.close()
        await runner.cleanup()


def client(
    ca: TestCA,
    *,
    fastpath: bool,
    app: str = "appA",
    frame_limit: int = FRAME_LIMIT,
    response_limit: int | None = None,
    timeout_s: float = 10.0,
    max_connection_age: timedelta | None = None,
    clock: Callable[[], float] | None = None,
) -> tuple[InternalClient, Identity]:
    anchors = StaticAnchors.from_pem(ca.anchors_pem())
    identity = Identity(svid(ca, app), anchors)
    extra: dict[str, Any] = {} if clock is None else {"clock": clock}
    made = InternalClient(
        channel_factory=channel_factory(identity.clients, anchors),
        fastpath=dataclasses.replace(
            fastpath_dialer(identity, frame_limit), max_response=response_limit
        )
        if fastpath
        else None,
        timeout_s=timeout_s,
        max_connection_age=max_connection_age,
        **extra,
    )
    return made, identity


class Static:
    """Name resolution to one address."""

    def __init__(self, address: str) -> None:
        self.address = address

    def resolve(self, app_id: str, namespace: str) -> str:
        return self.address

    def invalidate(self, app_id: str, namespace: str) -> None:
        pass


@dataclass
class Caller:
    url: str
    session: aiohttp.ClientSession
    client: InternalClient

    async def call(
        self, verb: str, target: str, path: str, body: bytes = b"", **headers: str
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """(status, headers without Date, body) of ``/v1.0/invoke/<target>/method/<path>``."""
        url = f"{self.url}/v1.0/invoke/{target}/method/{path}"
        async with self.session.request(verb, url, data=body or None, headers=headers) as r:
            kept = [(k.lower(), v) for k, v in r.headers.items() if k.lower() != "date"]
            return r.status, kept, await r.read()


@asynccontextmanager
async def caller(address: str, internal: InternalClient) -> AsyncIterator[Caller]:
    direct = DirectMessaging(
        app_id="appA", namespace="default", resolver=Static(address), client=internal, local=None
    )
    settings = ApiSettings("appA", "default", None, 0, 0, True, max_body_size=BODY_LIMIT)
    runner, port = await serve(HttpApi(settings, direct).app())
    session = aiohttp.ClientSession()
    try:
        yield Caller(f"http://127.0.0.1:{port}", session, internal)
    finally:
        await session.close()
        await runner.cleanup()
        internal.close()
