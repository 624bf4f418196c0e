"""A plain static file server (Python's ``http.server``), the kind of app a path traversal hurts.

Run: ``python tests/apps/static_app.py PORT ROOT LOG``. It serves ``ROOT`` for GET and POST
(decoding the path once and resolving ``..`` as ``SimpleHTTPRequestHandler`` does), speaks
HTTP/1.0 and never sends ``100 Continue``. Every request is appended to ``LOG`` as one JSON line:
``{"method", "path" (raw, as received), "headers", "length"}``. ``GET /health`` answers 200.
"""

from __future__ import annotations

import json
import sys
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Handler(SimpleHTTPRequestHandler):
    log_file: Path

    def _record(self, length: int) -> None:
        entry = {
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "length": length,
        }
        with self.log_file.open("a") as f:
            f.write(json.dumps(entry) + "\n")

    def do_GET(self) -> None:
        if self.path == "/health":
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            return
        self._record(0)
        super().do_GET()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self._record(len(body))
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    port, root, log = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    Handler.log_file = log
    server = ThreadingHTTPServer(("127.0.0.1", port), partial(Handler, directory=root))
    server.serve_forever()


if __name__ == "__main__":
    main()
