"""protobuf <-> dataclass conversion at the internal gRPC edge (spec §10)."""

from __future__ import annotations

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from pysentry.sidecar import messages
from pysentry.sidecar.invocation import InvocationError, InvokeRequest, InvokeResponse, Target

REQ = InvokeRequest(
    method="orders/list",
    verb="POST",
    query="k=v&x=%20",
    content_type="text/plain",
    headers=(("x-a", "1"), ("x-a", "2"), ("dapr-caller-app-id", "appA")),
    body=b"abc",
)


def test_unary_request_round_trip() -> None:
    msg = messages.request_to_proto(REQ)
    assert msg.ver == 1
    assert msg.message.http_extension.querystring == "k=v&x=%20"
    assert list(msg.metadata["x-a"].values) == ["1", "2"]
    assert msg.message.data.value == b"abc" and msg.message.data.type_url == ""
    back = messages.request_from_proto(
        messages.InternalInvokeRequest.FromString(msg.SerializeToString())
    )
    assert back.method == REQ.method and back.verb == "POST" and back.body == b"abc"
    assert sorted(back.headers) == sorted(REQ.headers)


def test_response_round_trip_keeps_status_headers_body() -> None:
    resp = InvokeResponse(503, (("x-from-app", "b"),), "application/json", b'{"x":1}')
    msg = messages.response_to_proto(resp)
    assert msg.status.code == 503 and msg.status.message == "Service Unavailable"
    assert messages.response_from_proto(msg) == resp


@pytest.mark.parametrize(
    ("size", "chunks"), [(0, 0), (1, 1), (2048, 1), (2049, 2), (10_000, 5)], ids=str
)
def test_stream_chunks_are_at_most_2k_with_seq_from_zero(size: int, chunks: int) -> None:
    body = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    out = list(messages.request_stream(InvokeRequest("m", body=body)))
    assert out[0].HasField("request") and not out[0].request.message.data.value
    payloads = [m.payload for m in out if m.HasField("payload")]
    assert len(payloads) == chunks
    assert [p.seq for p in payloads] == list(range(chunks))
    assert all(len(p.data) <= 2048 for p in payloads)
    assert all(not m.HasField("request") for m in out[1:])
    asm = messages.PayloadAssembler()
    for p in payloads:
        asm.add(p)
    assert asm.body() == body


def test_out_of_order_seq_is_rejected() -> None:
    asm = messages.PayloadAssembler()
    with pytest.raises(GRPCError) as err:
        asm.add(messages.common_pb2.StreamPayload(data=b"x", seq=1))
    assert err.value.status is Status.INVALID_ARGUMENT


def test_missing_http_extension_is_invalid_argument() -> None:
    msg = messages.request_to_proto(REQ)
    msg.message.ClearField("http_extension")
    with pytest.raises(GRPCError, match="missing HTTP extension field"):
        messages.request_from_proto(msg)


def test_go_error_text() -> None:
    err = GRPCError(Status.PERMISSION_DENIED, "nope")
    assert messages.go_error_text(err) == "rpc error: code = PermissionDenied desc = nope"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("b", Target("b", "ns1")), ("b.prod", Target("b", "prod"))],
    ids=["own-namespace", "other-namespace"],
)
def test_target_parse(value: str, expected: Target) -> None:
    assert Target.parse(value, default_namespace="ns1") == expected


@pytest.mark.parametrize("value", ["a.b.c", "", ".x"], ids=["two-dots", "empty", "no-app"])
def test_target_parse_rejects(value: str) -> None:
    with pytest.raises(InvocationError, match="invalid app id"):
        Target.parse(value, default_namespace="default")
