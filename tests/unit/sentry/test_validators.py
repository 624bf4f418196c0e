"""The common request checks (§7.3) and the insecure validator (§7.4)."""

from __future__ import annotations

import pytest

from pysentry.errors import RequestDenied
from pysentry.sentry.validators import InsecureValidator, SignRequest, validate_common
from pysentry.spiffe import TrustDomain

CSR = b"-----BEGIN CERTIFICATE REQUEST-----"

CASES = [
    ("empty-id", SignRequest("", "default", CSR), "parameter app-id cannot be empty"),
    ("dot", SignRequest("a.b", "default", CSR), "parameter app-id cannot contain dots"),
    ("long", SignRequest("a" * 65, "default", CSR), "app ID must be 64 characters or less"),
    ("long-dot", SignRequest("a." * 40, "default", CSR), "parameter app-id cannot contain dots"),
    ("no-csr", SignRequest("app", "default", b""), "CSR is required"),
    ("no-ns", SignRequest("app", "", CSR), "namespace is required"),
    (
        "all",
        SignRequest("", "", b""),
        "parameter app-id cannot be empty\nCSR is required\nnamespace is required",
    ),
]


@pytest.mark.parametrize(("request_", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_common_problems_are_joined(request_: SignRequest, message: str) -> None:
    with pytest.raises(RequestDenied) as info:
        validate_common(request_)
    assert str(info.value) == "invalid request: " + message


def test_trust_domain_result() -> None:
    assert validate_common(SignRequest("a" * 64, "ns", CSR)) == TrustDomain("public")
    assert validate_common(SignRequest("a", "ns", CSR, trust_domain="example.org")) == TrustDomain(
        "example.org"
    )
    assert validate_common(
        SignRequest("a", "ns", CSR, trust_domain="spiffe://example.org")
    ) == TrustDomain("example.org")
    with pytest.raises(RequestDenied, match="invalid trust domain"):
        validate_common(SignRequest("a", "ns", CSR, trust_domain="UPPER"))


async def test_insecure_trusts_the_claims() -> None:
    validator = InsecureValidator()
    assert validator.ready() and validator.health_target is None
    td = await validator.validate(SignRequest("app", "ns", CSR, trust_domain="td1"))
    assert td == TrustDomain("td1")
    assert "token" not in repr(SignRequest("a", "b", CSR, token="secret-token"))
