"""``pysentry-invoke/2`` payloads: the receiver gets exactly what the gRPC path's protobuf
messages give it (header order, lower-cased names, encoded method, status 0, refused verbs),
and a payload that does not parse is a protocol violation."""

from __future__ import annotations

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from pysentry.proto.dapr.proto.common.v1 import common_pb2
from pysentry.sidecar import fastpath_codec as codec
from pysentry.sidecar import messages
from pysentry.sidecar.fastpath_protocol import ProtocolViolation
from pysentry.sidecar.invocation import VERBS, InvokeRequest, InvokeResponse

HEADERS = (
    ("x-b", "2"),
    ("X-A", "1"),
    ("x-b", "ü-3"),
    ("dapr-caller-app-id", "appa"),
    ("empty", ""),
)
REQUESTS = [
    InvokeRequest("echo"),
    InvokeRequest("a b/ü;c%", "POST", "q=1&r=%20", "text/plain", HEADERS, b"\x00body" * 300),
    InvokeRequest("m", "PATCH", headers=(("k", "v\x00with nul"),)),
]


def _join(parts: tuple[bytes, bytes]) -> bytes:
    return parts[0] + parts[1]


def test_verb_numbers_are_the_proto_enum() -> None:
    assert {v: common_pb2.HTTPExtension.Verb.Value(v) for v in VERBS} == codec.VERB_NUMBERS


@pytest.mark.parametrize("request_", REQUESTS)
def test_a_request_reads_back_as_through_protobuf(request_: InvokeRequest) -> None:
    via_proto = messages.request_from_proto(
        messages.InternalInvokeRequest.FromString(
            messages.request_to_proto(request_).SerializeToString()
        )
    )
    assert codec.decode_request(_join(codec.encode_request(request_))) == via_proto


@pytest.mark.parametrize("status", [200, 404, 0, 599])
def test_a_response_reads_back_as_through_protobuf(status: int) -> None:
    response = InvokeResponse(status, HEADERS, "application/json", b'{"a": 1}')
    via_proto = messages.response_from_proto(
        messages.InternalInvokeResponse.FromString(
            messages.response_to_proto(response).SerializeToString()
        )
    )
    decoded = codec.decode_response(_join(codec.encode_response(response)))
    assert decoded == via_proto
    assert decoded.status == (status or 200)


def test_the_body_is_kept_apart_for_writing() -> None:
    body = b"x" * 5000
    head, kept = codec.encode_request(InvokeRequest("m", "PUT", body=body))
    assert kept is body and len(head) < 100


def test_verbs_daprd_refuses_fail_the_call_not_the_connection() -> None:
    good = _join(codec.encode_request(InvokeRequest("m", "GET")))
    for number in (0, codec.VERB_NUMBERS["CONNECT"]):
        with pytest.raises(GRPCError) as err:
            codec.decode_request(bytes((number,)) + good[1:])
        assert (err.value.status, err.value.message) == (
            Status.INVALID_ARGUMENT,
            "invalid HTTP verb",
        )


def test_payloads_that_do_not_parse_are_protocol_violations() -> None:
    good = _join(codec.encode_request(InvokeRequest("method", "GET", headers=HEADERS)))
    response = _join(codec.encode_response(InvokeResponse(200, HEADERS)))
    bad_requests = [
        b"",
        good[:4],
        bytes((42,)) + good[1:],  # no such verb
        good[:1] + (2).to_bytes(4, "big") + good[5:],  # fewer strings than a request has
        good[:1] + (4).to_bytes(4, "big") + good[5:],  # half a header
        good[:1] + (1000).to_bytes(4, "big") + good[5:],  # lengths past the end
        good[:5] + (1 << 20).to_bytes(4, "big") + good[9:],  # a string past the end
        good.replace(b"method", b"m\xffthod"),  # not UTF-8
    ]
    for payload in bad_requests:
        with pytest.raises(ProtocolViolation):
            codec.decode_request(payload)
    for payload in (b"", response[:6], response[:4] + (0).to_bytes(4, "big") + response[8:]):
        with pytest.raises(ProtocolViolation):
            codec.decode_response(payload)
