"""An HTTP/1.1 app that takes a request body's length only from ``Content-Length``.

Run: ``python tests/interop/cl_app.py PORT``. Like many small servers (and Go's
``http_channel`` callee side), it never decodes ``Transfer-Encoding: chunked``: without a
Content-Length it reads no body at all.

* ``* /len[/...]``: 200 JSON ``{content_length, transfer_encoding, received, sha256, method,
  query, headers}``; ``?status=N`` sets the status.
* ``GET /blob?n=N``: N bytes (``Content-Length: N``), a repeating pattern.
* ``GET /health``: 200.
"""

from __future__ import annotations

import hashlib
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PATTERN = bytes(range(256))


def blob(n: int) -> bytes:
    return (PATTERN * (n // len(PATTERN) + 1))[:n]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        declared = self.headers.get("Content-Length")
        chunked = self.headers.get("Transfer-Encoding")
        body = self.rfile.read(int(declared)) if declared else b""
        if chunked:
            self.close_connection = True  # the chunked body was never read
        if url.path == "/health":
            self._reply(200, b"ok", "text/plain")
        elif url.path == "/blob":
            self._reply(200, blob(int(query.get("n", ["0"])[0])), "application/octet-stream")
        elif url.path == "/len" or url.path.startswith("/len/"):
            payload = {
                "content_length": declared,
                "transfer_encoding": chunked,
                "received": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
                "method": self.command,
                "query": url.query,
                "headers": {k.lower(): v for k, v in self.headers.items()},
            }
            status = int(query.get("status", ["200"])[0])
            self._reply(status, json.dumps(payload).encode(), "application/json")
        else:
            self._reply(404, b"not found", "text/plain")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print(f"cl_app listening on {sys.argv[1]}", flush=True)
    server.serve_forever()
