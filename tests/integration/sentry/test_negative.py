"""Every refusal over real gRPC: status code and exact message (spec §7.2-§7.6)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from pysentry.pki.csr import build_csr
from pysentry.pki.keys import generate_key
from pysentry.pki.pem import decode_pem, encode_pem, load_certificates
from pysentry.pki.svid import id_from_cert
from pysentry.proto.dapr.proto.sentry.v1 import sentry_pb2

from .conftest import Launcher, SentryProcess, make_request

SENTRY_ID = "spiffe://localhost/ns/default/dapr-sentry"
SUBJECT = "spiffe://public/ns/default/myapp"
INSECURE, KUBERNETES, JWKS = 1, 2, 3
MAX_REQUEST_BYTES = 8192


def bad_signature_csr() -> bytes:
    block = decode_pem(build_csr(generate_key()))[0]
    der = bytearray(block.der)
    der[-3] ^= 0x01  # inside the ECDSA signature value
    return encode_pem("CERTIFICATE REQUEST", bytes(der))


def p192_csr() -> bytes:
    return build_csr(ec.generate_private_key(ec.SECP192R1()))


def rsa_1024_csr() -> bytes:
    return build_csr(rsa.generate_private_key(public_exponent=65537, key_size=1024))


@pytest.fixture(scope="module")
def insecure_sentry(module_launcher: Launcher) -> SentryProcess:
    return module_launcher(
        "--max-request-bytes", str(MAX_REQUEST_BYTES), creds=module_launcher.workdir / "insecure"
    )


@pytest.fixture(scope="module")
def jwks_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def jwks_sentry(module_launcher: Launcher, jwks_key: ec.EllipticCurvePrivateKey) -> SentryProcess:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(jwks_key.public_key()))
    jwk["kid"] = "k1"
    config = module_launcher.workdir / "jwks.yaml"
    config.write_text(
        "spec:\n  mtls:\n    tokenValidators:\n      - name: jwks\n        options:\n"
        f"          source: '{json.dumps({'keys': [jwk]})}'\n"
    )
    return module_launcher("--config", str(config), creds=module_launcher.workdir / "jwks")


def token(key: object, *, sub: str = SUBJECT, aud: str = SENTRY_ID, exp_in: int = 600) -> str:
    now = int(time.time())
    claims = {"sub": sub, "aud": aud, "iat": now, "exp": now + exp_in}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": "k1"})  # type: ignore[arg-type]


async def expect(
    sentry: SentryProcess, request: sentry_pb2.SignCertificateRequest, status: Status, message: str
) -> None:
    with pytest.raises(GRPCError) as info:
        await sentry.sign(request)
    assert info.value.status == status, info.value.message
    if message.endswith("*"):
        assert (info.value.message or "").startswith(message[:-1]), info.value.message
    else:
        assert info.value.message == message


INSECURE_CASES = [
    (
        "empty-id",
        make_request(""),
        Status.PERMISSION_DENIED,
        "invalid request: parameter app-id cannot be empty",
    ),
    (
        "id-with-dot",
        make_request("my.app"),
        Status.PERMISSION_DENIED,
        "invalid request: parameter app-id cannot contain dots",
    ),
    (
        "id-over-64",
        make_request("a" * 65),
        Status.PERMISSION_DENIED,
        "invalid request: app ID must be 64 characters or less",
    ),
    (
        "empty-namespace",
        make_request("myapp", ""),
        Status.PERMISSION_DENIED,
        "invalid request: namespace is required",
    ),
    (
        "missing-csr",
        make_request("myapp", csr=b""),
        Status.PERMISSION_DENIED,
        "invalid request: CSR is required",
    ),
    (
        "all-joined",
        make_request("", "", csr=b""),
        Status.PERMISSION_DENIED,
        "invalid request: parameter app-id cannot be empty\nCSR is required\nnamespace is required",
    ),
    (
        "bad-trust-domain",
        make_request(trust_domain="Bad_TD"),
        Status.PERMISSION_DENIED,
        "invalid trust domain*",
    ),
    (
        "garbage-csr",
        make_request(csr=b"not a csr"),
        Status.INVALID_ARGUMENT,
        "invalid certificate signing request",
    ),
    (
        "wrong-pem-type",
        make_request(csr=encode_pem("PUBLIC KEY", b"x")),
        Status.INVALID_ARGUMENT,
        "invalid certificate signing request",
    ),
    (
        "undecodable-csr",
        make_request(csr=encode_pem("CERTIFICATE REQUEST", b"\x30\x03abc")),
        Status.INVALID_ARGUMENT,
        "failed to parse certificate signing request: *",
    ),
    (
        "bad-signature",
        make_request(csr=bad_signature_csr()),
        Status.INVALID_ARGUMENT,
        "invalid signature",
    ),
    (
        "rsa-1024",
        make_request(csr=rsa_1024_csr()),
        Status.INVALID_ARGUMENT,
        "unsupported public key: *",
    ),
    (
        "p192",
        make_request(csr=p192_csr()),
        Status.INVALID_ARGUMENT,
        "unsupported public key: ECDSA curve 'secp192r1' is not supported*",
    ),
    (
        "validator-not-enabled",
        make_request(token_validator=JWKS),
        Status.INVALID_ARGUMENT,
        "the requested validator is not enabled",
    ),
    (
        "kubernetes-not-enabled",
        make_request(token_validator=KUBERNETES),
        Status.INVALID_ARGUMENT,
        "the requested validator is not enabled",
    ),
    (
        "unknown-validator-number",
        make_request(token_validator=7),
        Status.INVALID_ARGUMENT,
        "the requested validator is not enabled",
    ),
    ("id-bad-charset", make_request("my app"), Status.INTERNAL, "failed to sign certificate"),
    (
        "too-large",
        make_request(token="x" * MAX_REQUEST_BYTES),
        Status.RESOURCE_EXHAUSTED,
        "request too large: *",
    ),
]


@pytest.mark.parametrize(
    ("request_", "status", "message"),
    [c[1:] for c in INSECURE_CASES],
    ids=[c[0] for c in INSECURE_CASES],
)
async def test_insecure_refusals(
    insecure_sentry: SentryProcess,
    request_: sentry_pb2.SignCertificateRequest,
    status: Status,
    message: str,
) -> None:
    await expect(insecure_sentry, request_, status, message)


async def test_insecure_failures_are_counted_and_server_stays_up(
    insecure_sentry: SentryProcess,
) -> None:
    response = await insecure_sentry.sign(make_request("ok", token="ignored"))
    assert str(id_from_cert(load_certificates(response.workload_certificate)[0])) == (
        "spiffe://public/ns/default/ok"
    )
    assert 'dapr_sentry_cert_sign_failure_total{reason="sign"}' in insecure_sentry.metrics()


@pytest.fixture
def other_key() -> Iterator[ec.EllipticCurvePrivateKey]:
    yield ec.generate_private_key(ec.SECP256R1())


async def test_jwks_refusals(
    jwks_sentry: SentryProcess,
    jwks_key: ec.EllipticCurvePrivateKey,
    other_key: ec.EllipticCurvePrivateKey,
) -> None:
    cases = [
        (
            make_request(),
            Status.INVALID_ARGUMENT,
            "a validator name must be specified in this environment",
        ),
        (
            make_request(token_validator=INSECURE),
            Status.INVALID_ARGUMENT,
            "the requested validator is not enabled",
        ),
        (
            make_request(token_validator=JWKS),
            Status.PERMISSION_DENIED,
            "the request does not contain a token",
        ),
        (
            make_request(
                token_validator=JWKS, token=token(jwks_key, sub="spiffe://public/ns/default/other")
            ),
            Status.PERMISSION_DENIED,
            'token validation failed: "sub" not satisfied: values do not match',
        ),
        (
            make_request(token_validator=JWKS, token=token(jwks_key, aud="spiffe://x/ns/y/z")),
            Status.PERMISSION_DENIED,
            'token validation failed: "aud" not satisfied',
        ),
        (
            make_request(token_validator=JWKS, token=token(jwks_key, exp_in=-600)),
            Status.PERMISSION_DENIED,
            'token validation failed: "exp" not satisfied',
        ),
        (
            make_request(token_validator=JWKS, token=token(other_key)),
            Status.PERMISSION_DENIED,
            "token validation failed: could not verify message using any of the signatures or keys",
        ),
        (
            make_request(token_validator=JWKS, token="not.a.jwt"),
            Status.PERMISSION_DENIED,
            "token validation failed: failed to parse token: *",
        ),
        (
            make_request("", token_validator=JWKS, token=token(jwks_key)),
            Status.PERMISSION_DENIED,
            "invalid request: parameter app-id cannot be empty",
        ),
        # the validator runs before the CSR is looked at
        (
            make_request(token_validator=JWKS, token=token(other_key), csr=b"junk"),
            Status.PERMISSION_DENIED,
            "token validation failed: *",
        ),
        (
            make_request(token_validator=JWKS, token=token(jwks_key), csr=b"junk"),
            Status.INVALID_ARGUMENT,
            "invalid certificate signing request",
        ),
    ]
    for request, status, message in cases:
        await expect(jwks_sentry, request, status, message)


async def test_jwks_valid_token_signs(
    jwks_sentry: SentryProcess, jwks_key: ec.EllipticCurvePrivateKey
) -> None:
    # 4 minutes past expiry is inside the 5-minute acceptable skew
    request = make_request(token_validator=JWKS, token=token(jwks_key, exp_in=-240))
    response = await jwks_sentry.sign(request)
    leaf = load_certificates(response.workload_certificate)[0]
    assert str(id_from_cert(leaf)) == SUBJECT
    status, body = jwks_sentry.healthz()
    assert status == 200 and body["not_ready"] == []
    assert "Adding validator 'jwks' with Sentry ID: " + SENTRY_ID in jwks_sentry.log_text()


def test_module_logs(insecure_sentry: SentryProcess, tmp_path: Path) -> None:
    assert "Using validator 'insecure'" in insecure_sentry.log_text()
