"""A small HTTP app for sidecar tests (aiohttp). Run: ``python tests/apps/http_app.py PORT``.

* ``* /echo[/...]``: 200 JSON ``{method, path, query, headers, body}`` (body as text), header
  ``X-From-App: <name>``; ``?status=N`` sets the status code.
* ``GET /big?n=N``: N bytes of ``b"x"``.
* ``GET /health``: 200.
"""

from __future__ import annotations

import json
import os
import sys

from aiohttp import web

NAME = os.environ.get("APP_NAME", "app")


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    status = int(request.query.get("status", "200"))
    payload = {
        "app": NAME,
        "method": request.method,
        "path": request.raw_path.split("?", 1)[0],
        "query": request.rel_url.raw_query_string,
        "headers": {k.lower(): v for k, v in request.headers.items()},
        "body": body.decode("utf-8", "replace"),
        "length": len(body),
    }
    return web.Response(
        status=status,
        body=json.dumps(payload).encode(),
        content_type="application/json",
        headers={"X-From-App": NAME},
    )


async def raw(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(body=body, content_type="application/octet-stream")


async def big(request: web.Request) -> web.Response:
    return web.Response(body=b"x" * int(request.query.get("n", "10000")))


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def build() -> web.Application:
    app = web.Application(client_max_size=64 << 20)
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/echo/{tail:.*}", echo)
    app.router.add_route("*", "/raw", raw)
    app.router.add_get("/big", big)
    app.router.add_get("/health", health)
    app.router.add_get("/", health)
    return app


if __name__ == "__main__":
    port = int(sys.argv[1])
    print(f"app {NAME} listening on {port}", flush=True)
    web.run_app(build(), host="127.0.0.1", port=port, print=None, access_log=None)
