"""``pysentry-invoke/2`` framing without I/O: split reads, skipped oversized frames, bad input."""

from __future__ import annotations

import pytest

from pysentry.sidecar import fastpath_protocol as fp
from pysentry.sidecar.limits import budget_for


def _wire() -> bytes:
    head, message, body = fp.request_frame(1, 1500, b"request-", b"bytes")
    return (
        head
        + message
        + body
        + fp.header(fp.RESPONSE, 7, 3)
        + b"abc"
        + fp.error_frame(2, 7, "denied: ünïcode")
        + fp.cancel_frame(3)
    )


def test_frames_survive_any_split() -> None:
    wire = _wire()
    for cut in range(len(wire) + 1):
        reader = fp.FrameReader(1024)
        frames = reader.feed(wire[:cut]) + reader.feed(wire[cut:])
        assert [(f.kind, f.stream) for f in frames] == [
            (fp.REQUEST, 1),
            (fp.RESPONSE, 7),
            (fp.ERROR, 2),
            (fp.CANCEL, 3),
        ]
        assert all(isinstance(f, fp.Frame) for f in frames)
        request, response, error, cancel = (f for f in frames if isinstance(f, fp.Frame))
        assert fp.split_request(request.payload) == (1500, b"request-bytes")
        assert response.payload == b"abc" and cancel.payload == b""
        assert fp.split_error(error.payload) == (7, "denied: ünïcode")


def test_oversized_frames_are_skipped_not_buffered() -> None:
    reader = fp.FrameReader(10)
    big = fp.header(fp.REQUEST, 5, 25) + b"y" * 25
    after = fp.header(fp.RESPONSE, 6, 2) + b"ok"
    wire = big + after
    out = reader.feed(wire[:12])  # the header and 3 payload bytes
    assert out == [fp.Oversized(fp.REQUEST, 5, 25)]
    assert reader.feed(wire[12:20]) == []
    assert reader.feed(wire[20:]) == [fp.Frame(fp.RESPONSE, 6, b"ok")]
    # the whole oversized frame in one read
    assert fp.FrameReader(10).feed(wire) == [
        fp.Oversized(fp.REQUEST, 5, 25),
        fp.Frame(fp.RESPONSE, 6, b"ok"),
    ]


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (fp.header(9, 1, 0), "unknown frame kind: 9"),
        (fp.header(fp.RESPONSE, 0, 0), "frame on stream 0"),
    ],
)
def test_malformed_frames_are_protocol_violations(wire: bytes, message: str) -> None:
    with pytest.raises(fp.ProtocolViolation, match=message):
        fp.FrameReader(10).feed(wire)


def test_malformed_payloads_are_protocol_violations() -> None:
    with pytest.raises(fp.ProtocolViolation, match="REQUEST payload too short: 3 bytes"):
        fp.split_request(b"abc")
    with pytest.raises(fp.ProtocolViolation, match="ERROR payload is empty"):
        fp.split_error(b"")


def test_frame_limit_is_one_body_and_the_connection_budget_two_frames() -> None:
    assert fp.max_payload(4 << 20) == (4 << 20) + fp.METADATA_ALLOWANCE  # was 33 MiB
    assert fp.max_payload(0) == (32 << 20) + fp.METADATA_ALLOWANCE  # no body cap: 32 MiB
    assert fp.connection_budget(fp.max_payload(4 << 20)) == budget_for(5 << 20) == 32 << 20
    assert fp.connection_budget(fp.max_payload(64 << 20)) == 2 * ((64 << 20) + (1 << 20))
    assert fp.too_large(70000, 65536) == "grpc: received message larger than max (70000 vs. 65536)"


def test_responses_may_be_as_large_as_before() -> None:
    """The caller's response limit did not shrink with the request frame (gRPC accepts those)."""
    assert fp.response_limit(fp.max_payload(4 << 20)) == (32 << 20) + fp.METADATA_ALLOWANCE
