"""Drive a sidecar's gRPC API with the official Dapr Python SDK (``DaprClient()`` over gRPC).

Run: ``DAPR_GRPC_PORT=... DAPR_HTTP_PORT=... python tests/apps/sdk_grpc_client.py TARGET``.
Prints one JSON object with what each call returned (or its gRPC error).
"""

from __future__ import annotations

import json
import os
import sys
import warnings

import grpc
from dapr.clients import DaprClient


def main() -> None:
    target = sys.argv[1]
    os.environ["DAPR_API_METHOD_INVOCATION_PROTOCOL"] = "grpc"
    out: dict[str, object] = {}
    warnings.simplefilter("ignore")
    with DaprClient() as client:
        resp = client.invoke_method(
            target, "echo/grpc", data=b'{"x":1}', http_verb="POST", http_querystring={"k": "v"}
        )
        out["invoke"] = {
            "data": json.loads(resp.data),
            "content_type": resp.content_type,
            "headers": {k: v for k, v in resp.headers.items()},
        }
        resp = client.invoke_method(target, "echo/default-verb", data=b"plain")
        out["invoke_default_verb"] = json.loads(resp.data)["method"]
        try:
            client.invoke_method(target, "echo/x?status=404", data=b"", http_verb="GET")
        except grpc.RpcError as err:
            out["invoke_question_mark"] = [err.code().name, err.details()]
        try:
            client.invoke_method(
                target, "echo", data=b"", http_verb="GET", http_querystring={"status": "404"}
            )
        except grpc.RpcError as err:
            out["invoke_404"] = [err.code().name, err.details()]
        try:
            client.invoke_method(
                target, "echo", data=b"", http_verb="GET", http_querystring={"status": "503"}
            )
        except grpc.RpcError as err:
            out["invoke_503"] = [err.code().name, err.details()]
        client.set_metadata("cliPID", "1234")
        meta = client.get_metadata()
        out["metadata"] = {
            "id": meta.application_id,
            "extended": dict(meta.extended_metadata),
        }
        try:
            client.get_state("statestore", "k")
        except Exception as err:  # the SDK wraps gRPC errors in DaprGrpcError
            out["get_state"] = str(err)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
