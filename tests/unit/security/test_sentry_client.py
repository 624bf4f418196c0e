"""SentryClient against a small in-test grpclib CA on 127.0.0.1 that signs with a real TestCA."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server, Stream

from pysentry.clock import system_clock
from pysentry.errors import ConfigError
from pysentry.pki.csr import build_csr, parse_csr
from pysentry.pki.keys import generate_key
from pysentry.proto.dapr.proto.sentry.v1 import sentry_grpc, sentry_pb2
from pysentry.security.backoff import shed_pause
from pysentry.security.identity import X509Svid
from pysentry.security.sentry_client import SentryClient, split_address
from pysentry.security.sentry_failure import SentryRequestFailed, go_code_name
from pysentry.security.sentry_sign import TokenValidator, parse_validator, request_trust_domain
from pysentry.security.tls import server_context
from pysentry.spiffe import SpiffeId
from pysentry.testing import TestCA

SENTRY_ID = SpiffeId.parse("spiffe://public/ns/default/dapr-sentry")


@dataclass
class FakeSentry(sentry_grpc.CABase):
    """Signs like Sentry (the real CA code path is tested with the real Sentry elsewhere)."""

    ca: TestCA
    fail_first: int = 0
    fail_status: Status = Status.UNAVAILABLE
    refuse: tuple[Status, str] | None = None
    hang: bool = False
    sign_as: str | None = None
    omit_valid_until: bool = False
    script: list[Status] = field(default_factory=list)
    """Statuses to answer with, one per request, before signing."""
    requests: list[sentry_pb2.SignCertificateRequest] = field(default_factory=list)

    async def SignCertificate(
        self,
        stream: Stream[sentry_pb2.SignCertificateRequest, sentry_pb2.SignCertificateResponse],
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        self.requests.append(request)
        if self.hang:
            await asyncio.sleep(60)
        if len(self.requests) <= self.fail_first:
            raise GRPCError(self.fail_status, "try later")
        if len(self.requests) <= len(self.script):
            raise GRPCError(self.script[len(self.requests) - 1], "try later")
        if self.refuse:
            raise GRPCError(*self.refuse)
        td = request.trust_domain or "public"
        app = self.sign_as or request.id
        signed = self.ca.bundle.sign(
            parse_csr(request.certificate_signing_request),
            SpiffeId.for_app(td, request.namespace, app),
            now=system_clock(),
        )
        response = sentry_pb2.SignCertificateResponse(
            workload_certificate=signed.chain_pem,
            trust_chain_certificates=[self.ca.anchors_pem()],
        )
        if not self.omit_valid_until:
            ts = Timestamp()
            ts.FromDatetime(signed.leaf.not_valid_after_utc)
            response.valid_until.CopyFrom(ts)
        await stream.send_message(response)


@dataclass
class Running:
    sentry: FakeSentry
    address: str
    ca: TestCA


async def _start(ca: TestCA, sentry_id: SpiffeId, servers: list[Server], **kw: object) -> Running:
    fake = FakeSentry(ca, **kw)  # type: ignore[arg-type]
    chain, key = ca.issue_svid(sentry_id)
    server = Server([fake])
    await server.start(
        "127.0.0.1",
        0,
        ssl=server_context(X509Svid.from_chain(chain, key), None, require_client_cert=False),
    )
    servers.append(server)
    port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return Running(fake, f"127.0.0.1:{port}", ca)


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def _client(run: Running, **kw: object) -> SentryClient:
    return SentryClient(run.address, (run.ca.root_cert,), **kw)  # type: ignore[arg-type]


async def test_signs_and_sends_daprs_request_fields(servers: list[Server]) -> None:
    run = await _start(TestCA.create("public"), SENTRY_ID, servers)
    key = generate_key()
    csr = build_csr(key)
    chain = await _client(run).sign(
        csr, app_id="myapp", namespace="prod", token="tok", validator="jwks"
    )
    svid = X509Svid.from_chain(chain, key)
    assert str(svid.spiffe_id) == "spiffe://public/ns/prod/myapp"
    assert len(chain) == 2
    (request,) = run.sentry.requests
    assert request.id == "myapp"
    assert request.namespace == "prod"
    assert request.token == "tok"
    assert request.trust_domain == ""
    assert request.certificate_signing_request == csr
    assert request.token_validator == sentry_pb2.SignCertificateRequest.JWKS


async def test_exact_sentry_id_with_control_plane_trust_domain(servers: list[Server]) -> None:
    run = await _start(TestCA.create("public"), SENTRY_ID, servers)
    csr = build_csr(generate_key())
    ok = _client(run, control_plane_trust_domain="public")
    assert await ok.sign(csr, app_id="a", namespace="default")
    wrong_td = _client(run, control_plane_trust_domain="cluster.local")
    with pytest.raises(SentryRequestFailed, match=r"unexpected SPIFFE ID") as info:
        await wrong_td.sign(csr, app_id="a", namespace="default", token="secret")
    assert info.value.reason == "sentry_conn"
    assert [r.token for r in run.sentry.requests] == [""]  # the token never left


async def test_server_that_is_not_sentry_gets_no_request(servers: list[Server]) -> None:
    impostor = SpiffeId.parse("spiffe://public/ns/default/not-sentry")
    run = await _start(TestCA.create("public"), impostor, servers)
    with pytest.raises(SentryRequestFailed, match="Sentry's certificate is not accepted"):
        await _client(run).sign(build_csr(generate_key()), app_id="a", namespace="default")
    assert run.sentry.requests == []


async def test_sentry_from_another_root_is_refused(servers: list[Server]) -> None:
    run = await _start(TestCA.create("public"), SENTRY_ID, servers)
    other = TestCA.create("public")
    client = SentryClient(run.address, (other.root_cert,))
    with pytest.raises(SentryRequestFailed, match="does not verify against the trust anchors"):
        await client.sign(build_csr(generate_key()), app_id="a", namespace="default")
    assert run.sentry.requests == []


async def test_connection_refused_after_five_attempts() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ca = TestCA.create("public")
    sleeps = Sleeps()
    client = SentryClient(f"127.0.0.1:{port}", (ca.root_cert,), sleep=sleeps)
    with pytest.raises(SentryRequestFailed) as info:
        await client.sign(build_csr(generate_key()), app_id="a", namespace="default")
    assert str(info.value) == (
        f"failed to connect to Sentry at '127.0.0.1:{port}': connection refused; is sentry running?"
    )
    assert info.value.reason == "sentry_conn"
    assert len(sleeps.calls) == 4  # 5 attempts
    assert all(0.045 <= s <= 0.055 for s in sleeps.calls)


async def test_unavailable_is_retried(servers: list[Server]) -> None:
    run = await _start(TestCA.create("public"), SENTRY_ID, servers, fail_first=2)
    sleeps = Sleeps()
    chain = await _client(run, sleep=sleeps).sign(
        build_csr(generate_key()), app_id="a", namespace="default"
    )
    assert chain
    assert len(run.sentry.requests) == 3
    assert len(sleeps.calls) == 2


class FakeClock:
    """A wall clock that moves only when the client sleeps."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)
        self.calls: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.now += timedelta(seconds=seconds)


async def test_resource_exhausted_backs_off_exponentially_with_jitter(
    servers: list[Server],
) -> None:
    run = await _start(
        TestCA.create("public"),
        SENTRY_ID,
        servers,
        fail_first=3,
        fail_status=Status.RESOURCE_EXHAUSTED,
    )
    clock = FakeClock()
    client = _client(run, clock=clock, sleep=clock.sleep, rand=lambda: 0.5)
    assert await client.sign(build_csr(generate_key()), app_id="a", namespace="default")
    assert len(run.sentry.requests) == 4
    assert clock.calls == [1.0, 2.0, 4.0]  # half of 2 s, 4 s, 8 s


async def test_resource_exhausted_is_retried_as_long_as_daprs_attempts_last(
    servers: list[Server],
) -> None:
    run = await _start(
        TestCA.create("public"),
        SENTRY_ID,
        servers,
        fail_first=999,
        fail_status=Status.RESOURCE_EXHAUSTED,
    )
    clock = FakeClock()
    client = _client(run, clock=clock, sleep=clock.sleep, rand=lambda: 0.999)
    with pytest.raises(SentryRequestFailed, match="code = ResourceExhausted desc = try later"):
        await client.sign(build_csr(generate_key()), app_id="a", namespace="default")
    # ceilings 2, 4, 8 s: 14 s; one more 10 s pause would pass the 15 s of 5 x 3 s
    assert clock.calls == pytest.approx([1.998, 3.996, 7.992])
    assert len(run.sentry.requests) == 4


async def test_sheds_do_not_use_up_the_five_attempts(servers: list[Server]) -> None:
    script = [Status.UNAVAILABLE] * 4 + [Status.RESOURCE_EXHAUSTED] * 3
    run = await _start(TestCA.create("public"), SENTRY_ID, servers, script=script)
    clock = FakeClock()
    client = _client(run, clock=clock, sleep=clock.sleep, rand=lambda: 0.0)
    assert await client.sign(build_csr(generate_key()), app_id="a", namespace="default")
    assert len(run.sentry.requests) == 8
    assert clock.calls == pytest.approx([0.045] * 4 + [0.01] * 3)  # Dapr's 50 ms -10%; 10 ms


def test_shed_pause_bounds() -> None:
    assert [shed_pause(n, lambda: 0.999_999) for n in range(1, 8)] == pytest.approx(
        [2, 4, 8, 10, 10, 10, 10], rel=1e-5
    )
    assert shed_pause(1, lambda: 0.0) == 0.01
    assert shed_pause(10_000, lambda: 0.5) == 5.0


async def test_refusal_passes_status_and_message_through(servers: list[Server]) -> None:
    msg = "failed to validate the request: token is missing"
    run = await _start(
        TestCA.create("public"), SENTRY_ID, servers, refuse=(Status.PERMISSION_DENIED, msg)
    )
    with pytest.raises(SentryRequestFailed) as info:
        await _client(run, sleep=Sleeps()).sign(
            build_csr(generate_key()), app_id="a", namespace="default"
        )
    assert str(info.value) == (
        f"error from sentry SignCertificate: rpc error: code = PermissionDenied desc = {msg}"
    )
    assert info.value.status == "PERMISSION_DENIED"
    assert info.value.reason == "sign"
    assert len(run.sentry.requests) == 1  # not retried


async def test_attempt_timeout_is_retried(servers: list[Server]) -> None:
    run = await _start(TestCA.create("public"), SENTRY_ID, servers, hang=True)
    client = _client(run, sleep=Sleeps(), attempt_timeout=timedelta(milliseconds=200))
    with pytest.raises(SentryRequestFailed, match=r"no answer within 0.2s \(5 attempts\)"):
        await client.sign(build_csr(generate_key()), app_id="a", namespace="default")
    assert len(run.sentry.requests) == 5


async def test_missing_valid_until_is_rejected(servers: list[Server]) -> None:
    run = await _start(TestCA.create("public"), SENTRY_ID, servers, omit_valid_until=True)
    with pytest.raises(SentryRequestFailed, match="valid_until is missing") as info:
        await _client(run).sign(build_csr(generate_key()), app_id="a", namespace="default")
    assert info.value.reason == "invalid_ts"


async def test_certificate_for_another_identity_is_rejected(servers: list[Server]) -> None:
    run = await _start(TestCA.create("public"), SENTRY_ID, servers, sign_as="someone-else")
    with pytest.raises(SentryRequestFailed, match="unexpected SPIFFE ID"):
        await _client(run).sign(build_csr(generate_key()), app_id="a", namespace="default")


async def test_certificate_from_another_ca_is_rejected(servers: list[Server]) -> None:
    sentry_ca = TestCA.create("public")
    run = await _start(sentry_ca, SENTRY_ID, servers)
    run.sentry.ca = TestCA.create("public")  # signs workloads with a CA the client does not trust
    with pytest.raises(SentryRequestFailed, match="signed by unknown authority"):
        await _client(run).sign(build_csr(generate_key()), app_id="a", namespace="default")


def test_request_trust_domain_only_for_control_plane() -> None:
    assert request_trust_domain(
        "dapr-placement", "dapr-system", "dapr-system", "cluster.local"
    ) == ("cluster.local")
    assert request_trust_domain("dapr-placement", "default", "dapr-system", "cluster.local") == ""
    assert request_trust_domain("myapp", "dapr-system", "dapr-system", "cluster.local") == ""


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("localhost:50001", ("localhost", 50001)),
        ("[::1]:443", ("::1", 443)),
        ("dns:///sentry:50001", ("sentry", 50001)),
    ],
    ids=["name", "ipv6", "dns-scheme"],
)
def test_split_address(address: str, expected: tuple[str, int]) -> None:
    assert split_address(address) == expected


@pytest.mark.parametrize("address", ["localhost", ":50001", "host:http", "host:70000"])
def test_bad_address(address: str) -> None:
    with pytest.raises(SentryRequestFailed, match="invalid Sentry address"):
        split_address(address)


def test_validator_names_and_go_codes() -> None:
    assert parse_validator("kubernetes") is TokenValidator.KUBERNETES
    with pytest.raises(ConfigError, match="unknown token validator 'oidc'"):
        parse_validator("oidc")
    assert go_code_name(Status.PERMISSION_DENIED) == "PermissionDenied"
    assert go_code_name(Status.INVALID_ARGUMENT) == "InvalidArgument"
