"""App A: a stdlib HTTP app that calls other apps with the official Dapr Python SDK.

Run: ``DAPR_HTTP_PORT=<sidecar> python tests/apps/sdk_app.py PORT``. ``GET /call?app=B&method=M
&verb=POST&body=...&status=...`` makes ``DaprClient().invoke_method`` (HTTP invocation protocol)
and answers 200 with JSON ``{status_code, content_type, headers, text}``, or, when the SDK raises
``DaprHttpError``, ``{error: {status_code, error_code, message}}``.

Never import this module (nor ``dapr``) in a process that imports ``pysentry.proto``.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprHttpError


def call(params: dict[str, str]) -> dict[str, object]:
    with DaprClient() as client:
        try:
            resp = client.invoke_method(
                params.get("app", "appB"),
                params.get("method", "echo"),
                data=params.get("body", ""),
                content_type=params.get("content_type", "text/plain"),
                http_verb=params.get("verb", "POST"),
                http_querystring=tuple((k[2:], v) for k, v in params.items() if k.startswith("q_"))
                or None,
                metadata=(("x-sdk-header", "from-sdk"),),
            )
        except DaprHttpError as err:
            return {
                "error": {
                    "status_code": err.status_code,
                    "error_code": getattr(err, "error_code", None),
                    "message": str(err),
                }
            }
    return {
        "status_code": resp.status_code,
        "content_type": resp.content_type,
        "headers": {k.lower(): v for k, v in resp.headers.items()},
        "text": resp.text(),
    }


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/health":
            self._send(200, b"ok")
            return
        if url.path != "/call":
            self._send(404, b"not found")
            return
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            out = json.dumps(call(params)).encode()
        except Exception as err:  # report anything to the test
            out = json.dumps({"exception": repr(err)}).encode()
        self._send(200, out)

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print("sdk app listening", flush=True)
    server.serve_forever()
