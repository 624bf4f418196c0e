"""The committed stubs are current, and their names and numbers are Dapr's (wire-contract.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from pysentry.proto import generate
from pysentry.proto.dapr.proto.common.v1 import common_pb2
from pysentry.proto.dapr.proto.internals.v1 import (
    apiversion_pb2,
    reminders_pb2,
    service_invocation_grpc,
    service_invocation_pb2,
    status_pb2,
)
from pysentry.proto.dapr.proto.sentry.v1 import sentry_grpc, sentry_pb2


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".pyi")
    }


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    generate.generate(tmp_path)
    fresh = _tree(tmp_path / "dapr")
    committed = _tree(generate.OUTPUT_ROOT / "dapr")
    assert sorted(fresh) == sorted(committed), "run `make proto` and commit the result"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert stale == [], f"stale generated files {stale!r}: run `make proto`"


def test_generated_code_never_imports_the_sdk_package() -> None:
    for path in (generate.OUTPUT_ROOT / "dapr").rglob("*.py*"):
        if path.suffix not in (".py", ".pyi"):
            continue  # bytecode caches
        for line in path.read_text().splitlines():
            if line.startswith(("import ", "from ")):
                assert " dapr." not in line, f"{path.name}: {line!r}"


def test_registered_file_names_are_daprs() -> None:
    assert sentry_pb2.DESCRIPTOR.name == "dapr/proto/sentry/v1/sentry.proto"
    assert common_pb2.DESCRIPTOR.name == "dapr/proto/common/v1/common.proto"
    assert service_invocation_pb2.DESCRIPTOR.name == (
        "dapr/proto/internals/v1/service_invocation.proto"
    )
    assert sentry_pb2.DESCRIPTOR.package == "dapr.proto.sentry.v1"
    assert status_pb2.DESCRIPTOR.package == "dapr.proto.internals.v1"


def _paths(stub_cls: type, channel: object) -> dict[str, str]:
    stub = stub_cls(channel)
    return {name: method.name for name, method in vars(stub).items()}


def test_method_paths() -> None:
    class _NoChannel:
        pass

    assert _paths(sentry_grpc.CAStub, _NoChannel()) == {
        "SignCertificate": "/dapr.proto.sentry.v1.CA/SignCertificate"
    }
    prefix = "/dapr.proto.internals.v1.ServiceInvocation/"
    assert _paths(service_invocation_grpc.ServiceInvocationStub, _NoChannel()) == {
        name: prefix + name
        for name in (
            "CallActor",
            "CallLocal",
            "CallActorReminder",
            "CallLocalStream",
            "CallActorStream",
        )
    }


def test_streaming_shapes() -> None:
    service = service_invocation_pb2.DESCRIPTOR.services_by_name["ServiceInvocation"]
    shapes = {
        m.name: (m.client_streaming, m.server_streaming, m.input_type.full_name)
        for m in service.methods
    }
    assert shapes["CallLocalStream"] == (
        True,
        True,
        "dapr.proto.internals.v1.InternalInvokeRequestStream",
    )
    assert shapes["CallActorStream"][:2] == (False, True)
    assert shapes["CallLocal"] == (False, False, "dapr.proto.internals.v1.InternalInvokeRequest")
    assert shapes["CallActorReminder"][2] == "dapr.proto.internals.v1.Reminder"


_T = FieldDescriptor
# (message descriptor, {field name: (number, type, repeated)}) straight from wire-contract.md.
_FIELDS: list[tuple[Descriptor, dict[str, tuple[int, int, bool]]]] = [
    (
        sentry_pb2.SignCertificateRequest.DESCRIPTOR,
        {
            "id": (1, _T.TYPE_STRING, False),
            "token": (2, _T.TYPE_STRING, False),
            "trust_domain": (3, _T.TYPE_STRING, False),
            "namespace": (4, _T.TYPE_STRING, False),
            "certificate_signing_request": (5, _T.TYPE_BYTES, False),
            "token_validator": (6, _T.TYPE_ENUM, False),
            "jwt_audiences": (7, _T.TYPE_STRING, True),
        },
    ),
    (
        sentry_pb2.SignCertificateResponse.DESCRIPTOR,
        {
            "workload_certificate": (1, _T.TYPE_BYTES, False),
            "trust_chain_certificates": (2, _T.TYPE_BYTES, True),
            "valid_until": (3, _T.TYPE_MESSAGE, False),
            "jwt": (4, _T.TYPE_MESSAGE, False),
            "per_audience_jwts": (5, _T.TYPE_MESSAGE, True),
        },
    ),
    (
        common_pb2.HTTPExtension.DESCRIPTOR,
        {"verb": (1, _T.TYPE_ENUM, False), "querystring": (2, _T.TYPE_STRING, False)},
    ),
    (
        common_pb2.InvokeRequest.DESCRIPTOR,
        {
            "method": (1, _T.TYPE_STRING, False),
            "data": (2, _T.TYPE_MESSAGE, False),
            "content_type": (3, _T.TYPE_STRING, False),
            "http_extension": (4, _T.TYPE_MESSAGE, False),
        },
    ),
    (
        common_pb2.InvokeResponse.DESCRIPTOR,
        {"data": (1, _T.TYPE_MESSAGE, False), "content_type": (2, _T.TYPE_STRING, False)},
    ),
    (
        common_pb2.StreamPayload.DESCRIPTOR,
        {"data": (1, _T.TYPE_BYTES, False), "seq": (2, _T.TYPE_UINT64, False)},
    ),
    (
        status_pb2.Status.DESCRIPTOR,
        {
            "code": (1, _T.TYPE_INT32, False),
            "message": (2, _T.TYPE_STRING, False),
            "details": (3, _T.TYPE_MESSAGE, True),
        },
    ),
    (
        service_invocation_pb2.Actor.DESCRIPTOR,
        {"actor_type": (1, _T.TYPE_STRING, False), "actor_id": (2, _T.TYPE_STRING, False)},
    ),
    (
        service_invocation_pb2.InternalInvokeRequest.DESCRIPTOR,
        {
            "ver": (1, _T.TYPE_ENUM, False),
            "metadata": (2, _T.TYPE_MESSAGE, True),
            "message": (3, _T.TYPE_MESSAGE, False),
            "actor": (4, _T.TYPE_MESSAGE, False),
        },
    ),
    (
        service_invocation_pb2.InternalInvokeResponse.DESCRIPTOR,
        {
            "status": (1, _T.TYPE_MESSAGE, False),
            "headers": (2, _T.TYPE_MESSAGE, True),
            "trailers": (3, _T.TYPE_MESSAGE, True),
            "message": (4, _T.TYPE_MESSAGE, False),
        },
    ),
    (
        service_invocation_pb2.InternalInvokeRequestStream.DESCRIPTOR,
        {"request": (1, _T.TYPE_MESSAGE, False), "payload": (2, _T.TYPE_MESSAGE, False)},
    ),
    (
        service_invocation_pb2.InternalInvokeResponseStream.DESCRIPTOR,
        {"response": (1, _T.TYPE_MESSAGE, False), "payload": (2, _T.TYPE_MESSAGE, False)},
    ),
    (
        service_invocation_pb2.ListStringValue.DESCRIPTOR,
        {"values": (1, _T.TYPE_STRING, True)},
    ),
    (
        reminders_pb2.Reminder.DESCRIPTOR,
        {
            "actor_id": (1, _T.TYPE_STRING, False),
            "actor_type": (2, _T.TYPE_STRING, False),
            "name": (3, _T.TYPE_STRING, False),
            "data": (4, _T.TYPE_MESSAGE, False),
            "period": (5, _T.TYPE_STRING, False),
            "registered_time": (6, _T.TYPE_MESSAGE, False),
            "due_time": (7, _T.TYPE_STRING, False),
            "expiration_time": (8, _T.TYPE_MESSAGE, False),
            "is_timer": (9, _T.TYPE_BOOL, False),
            "skip_lock": (10, _T.TYPE_BOOL, False),
        },
    ),
]


@pytest.mark.parametrize(("message", "expected"), _FIELDS, ids=[m.full_name for m, _ in _FIELDS])
def test_field_numbers_and_types(
    message: Descriptor, expected: dict[str, tuple[int, int, bool]]
) -> None:
    actual = {f.name: (f.number, f.type, f.is_repeated) for f in message.fields}
    assert actual == expected


def test_message_type_references() -> None:
    resp = sentry_pb2.SignCertificateResponse.DESCRIPTOR.fields_by_name
    assert resp["valid_until"].message_type.full_name == "google.protobuf.Timestamp"
    assert resp["jwt"].message_type.full_name == "google.protobuf.StringValue"
    assert resp["jwt"].has_presence  # proto3 `optional`
    entry = resp["per_audience_jwts"].message_type
    assert entry.GetOptions().map_entry
    assert entry.fields_by_name["value"].message_type.full_name == "google.protobuf.StringValue"
    req = service_invocation_pb2.InternalInvokeRequest.DESCRIPTOR.fields_by_name
    assert req["message"].message_type.full_name == "dapr.proto.common.v1.InvokeRequest"
    meta_value = req["metadata"].message_type.fields_by_name["value"]
    assert meta_value.message_type.full_name == "dapr.proto.internals.v1.ListStringValue"


def test_enums() -> None:
    tv = sentry_pb2.SignCertificateRequest.TokenValidator
    assert dict(tv.items()) == {
        "UNKNOWN": 0,
        "INSECURE": 1,
        "KUBERNETES": 2,
        "JWKS": 3,
    }
    verb = common_pb2.HTTPExtension.Verb
    names = ["NONE", "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]
    assert list(verb.items()) == [(name, i) for i, name in enumerate(names)]
    assert dict(apiversion_pb2.APIVersion.items()) == {"APIVERSION_UNSPECIFIED": 0, "V1": 1}


def test_wire_bytes_of_a_request() -> None:
    """Field numbers and wire types give these exact bytes (hand-encoded from the table)."""
    req = sentry_pb2.SignCertificateRequest(
        id="a", namespace="n", certificate_signing_request=b"c", token_validator=3
    )
    assert req.SerializeToString() == b"\x0a\x01a\x22\x01n\x2a\x01c\x30\x03"
