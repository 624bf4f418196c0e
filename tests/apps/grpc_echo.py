"""A plain grpcio server with a service of its own (``test.Echo``), for gRPC proxying tests.

Run: ``python tests/apps/grpc_echo.py PORT``. Messages are raw bytes (no .proto needed):

* ``/test.Echo/Say`` (unary): JSON ``{"body": <request>, "metadata": {...}}``; initial metadata
  ``x-echo: yes``;
* ``/test.Echo/Chat`` (bidi stream): each message back upper-cased;
* ``/test.Echo/Fail`` (unary): NOT_FOUND ``no such thing``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from concurrent import futures

import grpc


def say(request: bytes, context: grpc.ServicerContext) -> bytes:
    context.send_initial_metadata((("x-echo", "yes"),))
    metadata: dict[str, list[str]] = {}
    for key, value in context.invocation_metadata():
        metadata.setdefault(key, []).append(value if isinstance(value, str) else "<bin>")
    return json.dumps({"body": request.decode(), "metadata": metadata}).encode()


def chat(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    for message in requests:
        yield message.upper()


def fail(request: bytes, context: grpc.ServicerContext) -> bytes:
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
    raise AssertionError("unreachable")


def main() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    handlers = {
        "Say": grpc.unary_unary_rpc_method_handler(say),
        "Chat": grpc.stream_stream_rpc_method_handler(chat),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))
    server.add_insecure_port(f"127.0.0.1:{sys.argv[1]}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
