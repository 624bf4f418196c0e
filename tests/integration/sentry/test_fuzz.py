"""Random and mutated CSR bytes against the real server.

Only INVALID_ARGUMENT / PERMISSION_DENIED come back (or a certificate, when a mutation happens to
leave a valid CSR), and the server stays up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
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

from .conftest import Launcher, SentryProcess, close_channel, make_request

SEEDS = [build_csr(generate_key(a)) for a in (KeyAlgorithm.EC_P256, KeyAlgorithm.ED25519)]
SEED_DERS = [decode_pem(pem)[0].der for pem in SEEDS]


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


@pytest.fixture(scope="module")
def sentry(module_launcher: Launcher) -> SentryProcess:
    return module_launcher(creds=module_launcher.workdir / "fuzz")


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_fuzz_csr_bytes(sentry: SentryProcess, loop: asyncio.AbstractEventLoop) -> None:
    async def open_channel() -> Channel:
        return sentry.channel()

    channel = loop.run_until_complete(open_channel())
    stub = CAStub(channel)
    seen: set[Status | None] = set()

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
            seen.add(err.status)
            assert err.status in (Status.INVALID_ARGUMENT, Status.PERMISSION_DENIED), err
            return
        try:  # success is only fine for a CSR that really is valid
            parse_csr(csr)
        except InvalidCsr as err:
            raise AssertionError(f"signed an invalid CSR: {err}") from err
        seen.add(None)

    try:
        one()
        assert Status.INVALID_ARGUMENT in seen
        # still serving, and nothing unexpected was logged
        response = loop.run_until_complete(stub.SignCertificate(make_request(), timeout=10))
        assert response.workload_certificate
    finally:
        loop.run_until_complete(close_channel(channel))
    assert sentry.proc.poll() is None
    assert sentry.healthz()[0] == 200
    assert "failed unexpectedly" not in sentry.log_text()
