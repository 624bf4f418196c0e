"""The Sentry client's own wire codec matches protobuf's encoding of sentry.proto."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.protobuf.wrappers_pb2 import StringValue
from grpclib.const import Cardinality, Handler
from grpclib.server import Server, Stream

from pysentry.pki.csr import build_csr
from pysentry.pki.keys import generate_key
from pysentry.proto.dapr.proto.sentry.v1 import sentry_pb2
from pysentry.security.identity import X509Svid
from pysentry.security.sentry_client import SentryClient
from pysentry.security.sentry_failure import SentryRequestFailed
from pysentry.security.sentry_wire import (
    SIGN_CERTIFICATE,
    SignCertificateRequest,
    SignCertificateResponse,
    WireError,
)
from pysentry.security.tls import server_context
from pysentry.spiffe import SpiffeId
from pysentry.testing import TestCA
from tests.unit.security.rawcodec import RawCodec

REQUESTS: list[dict[str, Any]] = [
    {},
    {"id": "app", "namespace": "default", "certificate_signing_request": b"-----CSR-----\n"},
    {
        "id": "dapr-sentry",
        "token": "tok",
        "trust_domain": "cluster.local",
        "namespace": "dapr-system",
        "certificate_signing_request": b"x" * 300,  # a two-byte length
        "token_validator": "JWKS",
        "jwt_audiences": ("a", "", "spiffe://td"),
    },
    {"id": "é-ü", "token_validator": "KUBERNETES"},
    {"token_validator": "INSECURE", "jwt_audiences": ("only",)},
]


@pytest.mark.parametrize("fields", REQUESTS)
def test_request_is_byte_identical_to_protobuf(fields: dict[str, Any]) -> None:
    ours = SignCertificateRequest(**fields).SerializeToString()
    pb_fields = dict(fields)
    if "jwt_audiences" in pb_fields:
        pb_fields["jwt_audiences"] = list(pb_fields["jwt_audiences"])
    assert ours == sentry_pb2.SignCertificateRequest(**pb_fields).SerializeToString()


def _pb_response(**fields: Any) -> bytes:
    return sentry_pb2.SignCertificateResponse(**fields).SerializeToString()


@pytest.mark.parametrize(
    ("seconds", "nanos"), [(0, 0), (1_700_000_000, 999_999_999), (-62135596800, -5), (1, 0)]
)
def test_response_fields_decode_as_protobuf(seconds: int, nanos: int) -> None:
    data = _pb_response(
        workload_certificate=b"leaf+issuer",
        trust_chain_certificates=[b"root1", b"", b"root2"],
        valid_until=Timestamp(seconds=seconds, nanos=nanos),
        jwt=StringValue(value="ignored"),
        per_audience_jwts={"aud": StringValue(value="ignored too")},
    )
    response = SignCertificateResponse.FromString(data)
    assert response.workload_certificate == b"leaf+issuer"
    assert response.trust_chain_certificates == [b"root1", b"", b"root2"]
    assert response.valid_until is not None
    assert (response.valid_until.seconds, response.valid_until.nanos) == (seconds, nanos)


def test_absent_valid_until_is_none_and_empty_one_is_present() -> None:
    assert (
        SignCertificateResponse.FromString(_pb_response(workload_certificate=b"x")).valid_until
        is None
    )
    empty = bytes([3 << 3 | 2, 0])  # field 3, length 0: HasField is true, both zero
    response = SignCertificateResponse.FromString(empty)
    assert response.valid_until is not None
    assert (response.valid_until.seconds, response.valid_until.nanos) == (0, 0)


def test_repeated_singular_fields_follow_protobuf() -> None:
    first = _pb_response(workload_certificate=b"old", valid_until=Timestamp(seconds=5, nanos=7))
    second = _pb_response(workload_certificate=b"new", valid_until=Timestamp(seconds=9))
    ours = SignCertificateResponse.FromString(first + second)
    theirs = sentry_pb2.SignCertificateResponse.FromString(first + second)
    assert ours.workload_certificate == theirs.workload_certificate == b"new"
    assert ours.valid_until is not None
    assert (ours.valid_until.seconds, ours.valid_until.nanos) == (9, 7)  # merged, as protobuf
    assert (theirs.valid_until.seconds, theirs.valid_until.nanos) == (9, 7)


def test_unknown_fields_and_wire_types_are_skipped() -> None:
    unknown = (
        bytes([9 << 3 | 0, 0x96, 0x01, 10 << 3 | 1]) + b"\0" * 8 + bytes([11 << 3 | 5]) + b"\0" * 4
    )
    wrong_type = bytes([1 << 3 | 0, 1])  # workload_certificate as a varint
    data = unknown + wrong_type + _pb_response(workload_certificate=b"cert")
    assert SignCertificateResponse.FromString(data).workload_certificate == b"cert"
    assert sentry_pb2.SignCertificateResponse.FromString(data).workload_certificate == b"cert"


@pytest.mark.parametrize(
    "data",
    [
        bytes([1 << 3 | 2, 5]) + b"abc",  # length past the end
        bytes([1 << 3 | 0, 0x80]),  # varint cut short
        bytes([1 << 3 | 0]) + b"\xff" * 10 + b"\x01",  # varint longer than 10 bytes
        bytes([1 << 3 | 3]),  # a group
        bytes([0 << 3 | 0, 1]),  # field number 0
    ],
)
def test_malformed_response_is_an_error(data: bytes) -> None:
    with pytest.raises(WireError):
        SignCertificateResponse.FromString(data)


def test_sentry_client_does_not_load_protobuf_or_grpclibs_client() -> None:
    """daprd's first identity does not wait for protobuf or grpclib's client (issue 13)."""
    code = (
        "import sys, pysentry.security.sentry_client, pysentry.sidecar.mtls;"
        "print(sorted(m for m in sys.modules"
        " if m.startswith(('google', 'prometheus', 'grpclib.client', 'multidict'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


class GarbageSentry:
    def __init__(self) -> None:
        self.calls = 0

    async def sign(self, stream: Stream[bytes, bytes]) -> None:
        self.calls += 1
        await stream.recv_message()
        await stream.send_message(bytes([1 << 3 | 2, 50]) + b"cut short")

    def __mapping__(self) -> dict[str, Handler]:
        return {SIGN_CERTIFICATE: Handler(self.sign, Cardinality.UNARY_UNARY, bytes, bytes)}


async def test_a_response_that_does_not_parse_is_a_clear_error_without_retries() -> None:
    ca = TestCA.create("public")
    chain, key = ca.issue_svid(SpiffeId.parse("spiffe://public/ns/default/dapr-sentry"))
    sentry = GarbageSentry()
    server = Server([sentry], codec=RawCodec())
    context = server_context(X509Svid.from_chain(chain, key), None, require_client_cert=False)
    await server.start("127.0.0.1", 0, ssl=context)
    try:
        port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        client = SentryClient(f"127.0.0.1:{port}", (ca.root_cert,))
        with pytest.raises(SentryRequestFailed) as caught:
            await client.sign(build_csr(generate_key()), app_id="app", namespace="default")
    finally:
        server.close()
        await server.wait_closed()
    assert str(caught.value) == (
        "invalid response from Sentry: SignCertificateResponse does not parse: "
        "field 1: truncated (50 bytes announced)"
    )
    assert caught.value.reason == "sign"
    assert sentry.calls == 1
