"""The app channel keeps no cookies (as Dapr's Go client, which has no jar): an app's
``Set-Cookie`` goes back to the caller and is never sent to the app on a later call."""

from __future__ import annotations

from aiohttp import web

from pysentry.sidecar.app_channel import HttpAppChannel
from pysentry.sidecar.invocation import InvokeRequest
from tests.integration.sidecar.conftest import serve


async def test_set_cookie_is_returned_and_never_replayed() -> None:
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        response = web.Response(text="ok")
        response.set_cookie("session", "s3cret", domain=None, path="/")
        return response

    app = web.Application()
    app.router.add_get("/m", handler)
    runner, port = await serve(app)
    channel = HttpAppChannel(port, address="localhost")  # a host name: a jar would keep it
    try:
        for _ in range(2):
            result = await channel.call(InvokeRequest(method="m"))
            assert result.status == 200
            assert ("set-cookie", "session=s3cret; Path=/") in result.headers
    finally:
        await channel.close()
        await runner.cleanup()
    assert seen == [None, None]
