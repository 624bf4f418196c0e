"""A gRPC app built with the official SDK's ``dapr.ext.grpc.App`` (``--app-protocol grpc``).

Run: ``python tests/apps/grpc_app.py PORT``. Methods:

* ``echo``: JSON ``{data, content_type, metadata}`` of what it received, header
  ``x-from-grpc-app: yes``;
* ``fail``: raises, so the SDK answers a gRPC error (UNKNOWN);
* anything else: the SDK's UNIMPLEMENTED.
"""

from __future__ import annotations

import json
import sys

from dapr.ext.grpc import App, InvokeMethodRequest, InvokeMethodResponse

app = App()


@app.method("echo")
def echo(request: InvokeMethodRequest) -> InvokeMethodResponse:
    body = {
        "data": request.text(),
        "content_type": request.content_type,
        "metadata": {k: list(v) for k, v in request.metadata.items()},
    }
    return InvokeMethodResponse(
        json.dumps(body).encode(), "application/json", headers=(("x-from-grpc-app", "yes"),)
    )


@app.method("fail")
def fail(request: InvokeMethodRequest) -> InvokeMethodResponse:
    raise RuntimeError("the app failed on purpose")


if __name__ == "__main__":
    app.run(int(sys.argv[1]), listen_address="127.0.0.1")
