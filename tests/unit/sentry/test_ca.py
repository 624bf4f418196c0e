"""The signing pipeline in memory (grpclib.testing.ChannelFor): codes, messages, cap, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.testing import ChannelFor

from pysentry.errors import RequestDenied
from pysentry.pki.csr import build_csr
from pysentry.pki.keys import generate_key
from pysentry.pki.pem import load_certificates
from pysentry.proto.dapr.proto.sentry.v1 import sentry_pb2
from pysentry.proto.dapr.proto.sentry.v1.sentry_grpc import CAStub
from pysentry.sentry.ca import CaSettings, CertificateAuthority
from pysentry.sentry.monitoring import SentryMetrics
from pysentry.sentry.server import CaService
from pysentry.sentry.validators import (
    InsecureValidator,
    SignRequest,
    TokenValidator,
    Validator,
    validate_common,
)
from pysentry.spiffe import TrustDomain
from pysentry.testing import TestCA

SETTINGS = CaSettings(TrustDomain("cluster.local"), "dapr-system", max_concurrent_signs=2)


class GateValidator:
    """Blocks every request until ``gate`` is set; raises ``boom`` when given one."""

    def __init__(self, boom: Exception | None = None) -> None:
        self.gate = asyncio.Event()
        self.waiting = 0
        self.boom = boom

    kind = TokenValidator.INSECURE
    health_target = None

    def ready(self) -> bool:
        return True

    async def start(self) -> None:
        return None

    async def run(self) -> None:
        return None

    async def validate(self, request: SignRequest) -> TrustDomain:
        if self.boom is not None:
            raise self.boom
        self.waiting += 1
        await self.gate.wait()
        return validate_common(request)


def make_ca(
    validators: Mapping[TokenValidator, Validator] | None = None,
    *,
    bundle_ca: TestCA | None = None,
    settings: CaSettings = SETTINGS,
    now: datetime | None = None,
) -> tuple[CertificateAuthority, SentryMetrics]:
    metrics = SentryMetrics()
    ca = CertificateAuthority(
        (bundle_ca or TestCA.create("cluster.local")).bundle,
        settings,
        validators=validators or {TokenValidator.INSECURE: InsecureValidator()},
        default_validator=TokenValidator.INSECURE,
        metrics=metrics,
        clock=(lambda: now) if now else (lambda: datetime.now(UTC)),
    )
    return ca, metrics


def request(
    app_id: str = "app", namespace: str = "default", **kw: object
) -> sentry_pb2.SignCertificateRequest:
    return sentry_pb2.SignCertificateRequest(
        id=app_id,
        namespace=namespace,
        certificate_signing_request=build_csr(generate_key()),
        **kw,  # type: ignore[arg-type]
    )


async def test_past_the_cap_requests_queue_then_get_resource_exhausted() -> None:
    gate = GateValidator()
    ca, metrics = make_ca({TokenValidator.INSECURE: gate})
    service = CaService(ca, max_request_bytes=65536, max_sign_wait_s=0.2)
    async with ChannelFor([service]) as channel:
        stub = CAStub(channel)
        first = asyncio.create_task(stub.SignCertificate(request("a")))
        second = asyncio.create_task(stub.SignCertificate(request("b")))
        while gate.waiting < 2:
            await asyncio.sleep(0.001)
        with pytest.raises(GRPCError) as info:
            await stub.SignCertificate(request("c"))
        assert info.value.status == Status.RESOURCE_EXHAUSTED
        assert info.value.message == (
            "too many certificate signing requests: signing could not start within 200ms; "
            "retry later"
        )
        gate.gate.set()
        results = await asyncio.gather(first, second)
        assert all(r.workload_certificate for r in results)
        await stub.SignCertificate(request("d"))  # slots are released
    assert metrics.received._value.get() == 4
    assert metrics.success._value.get() == 3


async def test_unexpected_error_is_internal_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    ca, metrics = make_ca({TokenValidator.INSECURE: GateValidator(boom=KeyError("bug"))})
    async with ChannelFor([CaService(ca, max_request_bytes=65536)]) as channel:
        with pytest.raises(GRPCError) as info:
            await CAStub(channel).SignCertificate(request())
    assert (info.value.status, info.value.message) == (
        Status.INTERNAL,
        "failed to sign certificate",
    )
    record = next(r for r in caplog.records if r.levelno == logging.ERROR)
    assert record.exc_info is not None
    assert metrics.failure.labels(reason="sign")._value.get() == 1


async def test_denial_message_and_oversized_request() -> None:
    denied = GateValidator(boom=RequestDenied("one", "two", prefix="invalid request: "))
    ca, _ = make_ca({TokenValidator.INSECURE: denied})
    async with ChannelFor([CaService(ca, max_request_bytes=1000)]) as channel:
        stub = CAStub(channel)
        with pytest.raises(GRPCError) as info:
            await stub.SignCertificate(request())
        assert info.value.status == Status.PERMISSION_DENIED
        assert info.value.message == "invalid request: one\ntwo"
        with pytest.raises(GRPCError) as info:
            await stub.SignCertificate(request(token="t" * 2000))
        assert info.value.status == Status.RESOURCE_EXHAUSTED
        assert (info.value.message or "").startswith("request too large: ")


async def test_expired_issuer_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    test_ca = TestCA.create("cluster.local", ttl=timedelta(hours=1))
    ca, _ = make_ca(bundle_ca=test_ca, now=datetime.now(UTC) + timedelta(hours=2))
    async with ChannelFor([CaService(ca, max_request_bytes=65536)]) as channel:
        with pytest.raises(GRPCError) as info:
            await CAStub(channel).SignCertificate(request())
    assert (info.value.status, info.value.message) == (
        Status.INTERNAL,
        "failed to sign certificate",
    )
    assert "issuer certificate expired" in caplog.text


async def test_clamped_to_issuer_and_dns_special_cases(caplog: pytest.LogCaptureFixture) -> None:
    test_ca = TestCA.create("cluster.local", ttl=timedelta(hours=2))
    ca, _ = make_ca(bundle_ca=test_ca)
    async with ChannelFor([CaService(ca, max_request_bytes=65536)]) as channel:
        stub = CAStub(channel)
        resp = await stub.SignCertificate(request("dapr-scheduler", "dapr-system"))
        leaf = load_certificates(resp.workload_certificate)[0]
        assert leaf.not_valid_after_utc == test_ca.cert.not_valid_after_utc
        dns = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert dns.get_values_for_type(x509.DNSName) == [
            f"dapr-scheduler-server-{i}.dapr-scheduler-server.dapr-system.svc.cluster.local"
            for i in range(3)
        ]
        resp = await stub.SignCertificate(request("dapr-injector", "dapr-system"))
        leaf = load_certificates(resp.workload_certificate)[0]
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == ["dapr-sidecar-injector.dapr-system.svc"]
        resp = await stub.SignCertificate(request("dapr-injector", "other"))
        leaf = load_certificates(resp.workload_certificate)[0]
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == []
    assert "expire with the issuer certificate" in caplog.text


async def test_swap_changes_the_signer() -> None:
    first, second = TestCA.create("cluster.local"), TestCA.create("cluster.local")
    ca, _ = make_ca(bundle_ca=first)
    async with ChannelFor([CaService(ca, max_request_bytes=65536)]) as channel:
        stub = CAStub(channel)
        resp = await stub.SignCertificate(request())
        assert load_certificates(resp.workload_certificate)[1] == first.cert
        ca.swap(second.bundle)
        resp = await stub.SignCertificate(request())
        assert load_certificates(resp.workload_certificate)[1] == second.cert
        assert resp.trust_chain_certificates == [second.anchors_pem()]


async def test_a_stalled_request_loses_its_slot() -> None:
    ca, _ = make_ca(settings=CaSettings(TrustDomain("cluster.local"), "ns", max_concurrent_signs=1))
    service = CaService(ca, max_request_bytes=65536, read_timeout_s=0.2)
    async with ChannelFor([service]) as channel:
        stub = CAStub(channel)
        with pytest.raises(GRPCError) as info:
            async with stub.SignCertificate.open() as stalled:
                await stalled.send_request()  # headers only, the message never comes
                with contextlib.suppress(StreamTerminatedError):
                    await stalled.recv_message()
        assert info.value.status == Status.DEADLINE_EXCEEDED
        assert info.value.message == "request not received within 0.2s"
        assert (await stub.SignCertificate(request())).workload_certificate  # slot released
