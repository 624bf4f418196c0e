"""In-process sidecar pieces on loopback: app B, B's internal server, A's HTTP API."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from grpclib.server import Server

from pysentry.sidecar.app_channel import HttpAppChannel
from pysentry.sidecar.direct import DirectMessaging
from pysentry.sidecar.http_api import ApiSettings, HttpApi
from pysentry.sidecar.internal_client import InternalClient
from pysentry.sidecar.internal_server import ServiceInvocation
from pysentry.sidecar.resolver import Registration, SqliteResolver, SqliteSettings
from tests.apps.http_app import build


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    sock = site._server.sockets[0]  # type: ignore[union-attr]
    return runner, int(sock.getsockname()[1])


@dataclass
class Mesh:
    url: str  # sidecar A's HTTP API base
    session: aiohttp.ClientSession
    resolver: SqliteResolver
    internal_port: int


@pytest.fixture
async def mesh_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    cleanups: list[Any] = []

    async def make(
        *,
        service_cls: type[ServiceInvocation] = ServiceInvocation,
        api_token: str | None = None,
        acl: Any = None,
        server_ssl: Any = None,
        identify: Any = None,
        client: InternalClient | None = None,
    ) -> Mesh:
        app_runner, app_port = await serve(build())
        cleanups.append(app_runner.cleanup)
        channel = HttpAppChannel(app_port)
        cleanups.append(channel.close)
        service = service_cls(channel, app_id="appB", acl=acl, identify=identify)
        server = Server([service])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        await server.start(sock=sock, ssl=server_ssl)

        async def stop_server() -> None:
            server.close()
            await server.wait_closed()

        cleanups.append(stop_server)
        internal_port = sock.getsockname()[1]
        resolver = SqliteResolver(SqliteSettings(tmp_path / "nr.db"))
        resolver.register(Registration("appB", "default", f"127.0.0.1:{internal_port}"))
        client = client or InternalClient()
        cleanups.append(client.close)
        direct = DirectMessaging(
            app_id="appA", namespace="default", resolver=resolver, client=client, local=None
        )
        api = HttpApi(
            ApiSettings("appA", "default", None, 0, 0, server_ssl is not None, api_token=api_token),
            direct,
        )
        api_runner, api_port = await serve(api.app())
        cleanups.append(api_runner.cleanup)
        session = aiohttp.ClientSession()
        cleanups.append(session.close)
        return Mesh(f"http://127.0.0.1:{api_port}", session, resolver, internal_port)

    yield make
    for cleanup in reversed(cleanups):
        result = cleanup()
        if result is not None:
            await result
