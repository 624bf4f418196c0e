"""Our ``dapr.proto.runtime.v1`` messages match the official SDK's field for field.

The SDK's generated modules register the same .proto file names as ours, so they are read in a
separate interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys

from pysentry.proto.dapr.proto.runtime.v1 import appcallback_pb2, dapr_pb2

_SDK_SCRIPT = """
import json
from google.protobuf import symbol_database
from dapr.proto.runtime.v1 import dapr_pb2, appcallback_pb2  # noqa: F401
pool = symbol_database.Default().pool
out = {}
for name in json.loads(input()):
    d = pool.FindMessageTypeByName(name)
    out[name] = sorted(
        [f.number, f.name, f.type, f.is_repeated,
         f.message_type.full_name if f.message_type else ""] for f in d.fields)
services = {}
for svc in ("Dapr", "AppCallback", "AppCallbackHealthCheck"):
    s = pool.FindServiceByName("dapr.proto.runtime.v1." + svc)
    services[svc] = {m.name: [m.input_type.full_name, m.output_type.full_name] for m in s.methods}
print(json.dumps({"messages": out, "services": services}))
"""


def _ours() -> tuple[dict[str, list[list[object]]], dict[str, dict[str, list[str]]]]:
    messages: dict[str, list[list[object]]] = {}
    for module in (dapr_pb2, appcallback_pb2):
        for d in module.DESCRIPTOR.message_types_by_name.values():
            messages[d.full_name] = sorted(
                [
                    f.number,
                    f.name,
                    f.type,
                    f.is_repeated,
                    f.message_type.full_name if f.message_type else "",
                ]
                for f in d.fields
            )
    services = {
        s.name: {m.name: [m.input_type.full_name, m.output_type.full_name] for m in s.methods}
        for module in (dapr_pb2, appcallback_pb2)
        for s in module.DESCRIPTOR.services_by_name.values()
    }
    return messages, services


def test_runtime_messages_and_methods_match_the_sdk() -> None:
    messages, services = _ours()
    run = subprocess.run(
        [sys.executable, "-c", _SDK_SCRIPT],
        input=json.dumps(sorted(messages)),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    sdk = json.loads(run.stdout)
    for name, fields in messages.items():
        theirs = {f[0]: f for f in sdk["messages"][name]}
        for field in fields:
            # our messages hold a subset of Dapr's fields; each one is identical
            assert theirs[field[0]] == field, (name, field)
    for svc, methods in services.items():
        for method, types in methods.items():
            assert sdk["services"][svc][method] == types, (svc, method)
