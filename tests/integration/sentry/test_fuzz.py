"""Malformed input against the real server: mutated CSRs, CSR versions, cut and corrupt frames.

Only INVALID_ARGUMENT / PERMISSION_DENIED come back (or a certificate, when a mutation happens to
leave a valid CSR); never INTERNAL. The server stays up, logs no traceback, and its warnings about
bad requests are one line each and rate-limited (a flood ends in ``Suppressed N similar
messages``). Each test prints how many cases it tried.
"""

from __future__ import annotations

import asyncio
import struct
from collections import Counter
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pysentry.errors import InvalidCsr
from pysentry.pki.csr import build_csr, parse_csr
from pysentry.pki.keys import KeyAlgorithm, generate_key
from pysentry.pki.pem import decode_pem, encode_pem
from pysentry.proto.dapr.proto.sentry.v1.sentry_grpc import CAStub
from pysentry.sentry.loglimit import DEFAULT_BURST

from .conftest import Launcher, SentryProcess, StartSentry, close_channel, make_request

SEEDS = [build_csr(generate_key(a)) for a in (KeyAlgorithm.EC_P256, KeyAlgorithm.ED25519)]
SEED_DERS = [decode_pem(pem)[0].der for pem in SEEDS]
REFUSALS = (Status.INVALID_ARGUMENT, Status.PERMISSION_DENIED)
TRUNCATED = "grpc: error unmarshalling request: unexpected EOF"
BAD_WIRE = "grpc: error unmarshalling request: proto: cannot parse invalid wire-format data"


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEED_DERS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(("flip", "set", "cut", "insert", "delete")))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[pos]
    der = bytes(data)
    return draw(
        st.sampled_from(
            (encode_pem("CERTIFICATE REQUEST", der), der, encode_pem("CERTIFICATE", der))
        )
    )


CSR_BYTES = st.one_of(
    st.binary(max_size=3000),
    mutated(),
    st.builds(lambda b: encode_pem("CERTIFICATE REQUEST", b), st.binary(max_size=600)),
)


# -- DER helpers for CSRs whose version field is not 0 ---------------------------------------


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(body)) + body


def _split_tlv(data: bytes) -> tuple[int, bytes, bytes]:
    """(tag, body, rest) of the first TLV in ``data``."""
    tag, first = data[0], data[1]
    if first < 0x80:
        start, length = 2, first
    else:
        n = first & 0x7F
        start, length = 2 + n, int.from_bytes(data[2 : 2 + n], "big")
    return tag, data[start : start + length], data[start + length :]


def csr_with_version(version_der: bytes, *, resign: bool) -> bytes:
    """A P-256 CSR whose version INTEGER body is ``version_der``; re-signed when ``resign``."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = decode_pem(build_csr(key))[0].der
    _, outer, _ = _split_tlv(der)
    _, info, after_info = _split_tlv(outer)
    _, _old_version, info_rest = _split_tlv(info)
    new_info = _tlv(0x30, _tlv(0x02, version_der) + info_rest)
    _, alg_body, after_alg = _split_tlv(after_info)
    signature = _split_tlv(after_alg)[1]
    if resign:
        signature = b"\x00" + key.sign(new_info, ec.ECDSA(hashes.SHA256()))
    body = new_info + _tlv(0x30, alg_body) + _tlv(0x03, signature)
    return encode_pem("CERTIFICATE REQUEST", _tlv(0x30, body))


VERSIONS = [bytes([v]) for v in (1, 2, 3, 0x7F)] + [b"\xff", b"\x00\x80", b"\x01\x00", b"\x00"]


# -- the server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sentry(module_launcher: Launcher) -> SentryProcess:
    return module_launcher(creds=module_launcher.workdir / "fuzz")


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def channel(sentry: SentryProcess, loop: asyncio.AbstractEventLoop) -> Iterator[Channel]:
    async def open_channel() -> Channel:
        return sentry.channel()

    chan = loop.run_until_complete(open_channel())
    yield chan
    loop.run_until_complete(close_channel(chan))


def assert_server_healthy(sentry: SentryProcess, seen: Counter[str]) -> None:
    assert "INTERNAL" not in seen, seen
    assert sentry.proc.poll() is None
    assert sentry.healthz()[0] == 200
    log = sentry.log_text()
    assert "Traceback" not in log
    assert "failed unexpectedly" not in log


async def send_raw(stub: CAStub, frame: bytes) -> Status | None:
    """Send ``frame`` as the whole request body (no framing added); the status, None if OK."""
    try:
        async with stub.SignCertificate.open(timeout=10) as stream:
            await stream.send_request()
            await stream._stream.send_data(frame, end_stream=True)  # type: ignore[union-attr]
            await stream.recv_message()
    except GRPCError as err:
        return err.status
    return None


def test_fuzz_csr_bytes(
    sentry: SentryProcess, loop: asyncio.AbstractEventLoop, channel: Channel
) -> None:
    stub = CAStub(channel)
    seen: Counter[str] = Counter()

    @settings(
        max_examples=300,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(csr=CSR_BYTES)
    def one(csr: bytes) -> None:
        try:
            loop.run_until_complete(stub.SignCertificate(make_request(csr=csr), timeout=10))
        except GRPCError as err:
            seen[err.status.name] += 1
            assert err.status in REFUSALS, err
            return
        try:  # success is only fine for a CSR that really is valid
            parse_csr(csr)
        except InvalidCsr as err:
            raise AssertionError(f"signed an invalid CSR: {err}") from err
        seen["signed"] += 1

    one()
    print(f"\nfuzz CSR bytes: {sum(seen.values())} cases: {dict(seen)}")
    assert seen["INVALID_ARGUMENT"] > 0
    response = loop.run_until_complete(stub.SignCertificate(make_request(), timeout=10))
    assert response.workload_certificate  # still serving
    assert_server_healthy(sentry, seen)


@pytest.mark.parametrize("resign", [False, True], ids=["original-signature", "re-signed"])
def test_csr_version_not_zero_is_invalid_argument(
    sentry: SentryProcess, loop: asyncio.AbstractEventLoop, channel: Channel, resign: bool
) -> None:
    stub = CAStub(channel)
    seen: Counter[str] = Counter()
    for version in VERSIONS:
        csr = csr_with_version(version, resign=resign)
        if version == b"\x00":  # the control: version 0 is a valid CSR (when re-signed)
            if resign:
                response = loop.run_until_complete(
                    stub.SignCertificate(make_request(csr=csr), timeout=10)
                )
                assert response.workload_certificate
            continue
        with pytest.raises(GRPCError) as info:
            loop.run_until_complete(stub.SignCertificate(make_request(csr=csr), timeout=10))
        seen[info.value.status.name] += 1
        assert info.value.status == Status.INVALID_ARGUMENT, (version, info.value)
        message = info.value.message or ""
        assert message.startswith("failed to parse certificate signing request: ") or (
            message == "invalid signature"
        ), message
    print(f"\nCSR versions ({'re-signed' if resign else 'original signature'}): {dict(seen)}")
    assert_server_healthy(sentry, seen)


def test_cut_and_corrupt_frames_are_invalid_argument(
    sentry: SentryProcess, loop: asyncio.AbstractEventLoop, channel: Channel
) -> None:
    stub = CAStub(channel)
    body = make_request(token="t" * 40, trust_domain="public").SerializeToString()
    seen: Counter[str] = Counter()

    def expect(frame: bytes, allowed: tuple[Status, ...], case: str) -> None:
        status = loop.run_until_complete(send_raw(stub, frame))
        seen[status.name if status else "signed"] += 1
        assert status in allowed, (case, len(frame), status)

    # the length prefix says the whole message, the stream ends early: a cut frame
    for cut in range(len(body)):
        frame = struct.pack(">?I", False, len(body)) + body[:cut]
        expect(frame, (Status.INVALID_ARGUMENT,), "cut frame")
    for cut in range(1, 5):  # a cut length prefix
        expect(struct.pack(">?I", False, len(body))[:cut], (Status.INVALID_ARGUMENT,), "prefix")
    # a whole frame around a cut protobuf message: INVALID_ARGUMENT, or a refusal of the fields
    # it still has when the cut falls between two fields
    for cut in range(len(body)):
        frame = struct.pack(">?I", False, cut) + body[:cut]
        expect(frame, REFUSALS, "cut message")
    print(f"\ncut and corrupt frames: {sum(seen.values())} cases: {dict(seen)}")
    assert seen["INVALID_ARGUMENT"] >= len(body) + 4
    assert_server_healthy(sentry, seen)


def test_random_protobuf_bodies(
    sentry: SentryProcess, loop: asyncio.AbstractEventLoop, channel: Channel
) -> None:
    stub = CAStub(channel)
    seen: Counter[str] = Counter()

    @settings(
        max_examples=300,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(data=st.binary(min_size=1, max_size=400))
    def one(data: bytes) -> None:
        status = loop.run_until_complete(
            send_raw(stub, struct.pack(">?I", False, len(data)) + data)
        )
        seen[status.name if status else "signed"] += 1
        assert status in REFUSALS, status

    one()
    print(f"\nrandom protobuf bodies: {sum(seen.values())} cases: {dict(seen)}")
    assert_server_healthy(sentry, seen)


def test_bad_requests_are_one_line_and_rate_limited(
    start_sentry: StartSentry, loop: asyncio.AbstractEventLoop
) -> None:
    """A flood of malformed requests leaves a bounded number of lines in the log."""
    sentry = start_sentry()
    flood = 200

    async def run() -> None:
        chan = sentry.channel()
        try:
            stub = CAStub(chan)
            for _ in range(flood):
                status = await send_raw(stub, b"\x00\x00\x00\x00\x10\x0a")
                assert status == Status.INVALID_ARGUMENT
            with pytest.raises(GRPCError) as info:  # another kind of message: logged
                await stub.SignCertificate(make_request(csr=b"not a csr"), timeout=10)
            assert info.value.status == Status.INVALID_ARGUMENT
        finally:
            await close_channel(chan)

    loop.run_until_complete(run())
    lines = [line for line in sentry.log_text().splitlines() if "SignCertificate refused" in line]
    print(f"\nflood of {flood} malformed requests: {len(lines) - 1} log lines")
    assert 1 < len(lines) <= 1 + DEFAULT_BURST + 2, lines
    assert all(TRUNCATED in line for line in lines[:-1])
    assert "invalid certificate signing request" in lines[-1]
    assert_server_healthy(sentry, Counter())
