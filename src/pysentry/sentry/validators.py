"""Who may get a certificate: the ``Validator`` seam, the common checks, ``insecure`` (§7.3, §7.4).

A validator looks at a :class:`SignRequest` before the CSR is parsed and returns the trust domain
to issue in, or raises :class:`pysentry.errors.RequestDenied` (gRPC PERMISSION_DENIED, message
``str(err)``). The CA core keeps a ``dict[TokenValidator, Validator]``; adding the Kubernetes
validator means writing one more class and registering it, nothing in the server changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

from pysentry.errors import InvalidSpiffeId, RequestDenied
from pysentry.spiffe import TrustDomain

DEFAULT_APP_TRUST_DOMAIN = TrustDomain("public")
MAX_APP_ID_LENGTH = 64


class TokenValidator(IntEnum):
    """``SignCertificateRequest.TokenValidator`` values (wire-contract.md)."""

    UNKNOWN = 0
    INSECURE = 1
    KUBERNETES = 2
    JWKS = 3


@dataclass(frozen=True, slots=True)
class SignRequest:
    """A ``SignCertificateRequest`` without protobuf. ``validator`` is the raw enum number."""

    app_id: str
    namespace: str
    csr_pem: bytes
    token: str = field(default="", repr=False)
    trust_domain: str = ""
    validator: int = TokenValidator.UNKNOWN


class Validator(Protocol):
    """One token validator. ``validate`` raises ``RequestDenied`` with Dapr's message."""

    @property
    def kind(self) -> TokenValidator: ...

    @property
    def health_target(self) -> str | None:
        """A /healthz target name (e.g. ``sentry-jwks-validator``), or None for none."""
        ...

    def ready(self) -> bool: ...

    async def start(self) -> None:
        """Initial load (may fail: startup is then fatal)."""
        ...

    async def run(self) -> None:
        """Background refresh until cancelled (may return at once)."""
        ...

    async def validate(self, request: SignRequest) -> TrustDomain: ...


def app_id_problem(app_id: str) -> str | None:
    """Dapr's ``validation.ValidateSelfHostedAppID``."""
    if not app_id:
        return "parameter app-id cannot be empty"
    if "." in app_id:
        return "parameter app-id cannot contain dots"
    if len(app_id) > MAX_APP_ID_LENGTH:
        return f"app ID must be {MAX_APP_ID_LENGTH} characters or less"
    return None


def validate_common(request: SignRequest) -> TrustDomain:
    """§7.3: all problems joined behind ``invalid request: ``; then the requested trust domain."""
    problems = []
    id_problem = app_id_problem(request.app_id)
    if id_problem is not None:
        problems.append(id_problem)
    if not request.csr_pem:
        problems.append("CSR is required")
    if not request.namespace:
        problems.append("namespace is required")
    if problems:
        raise RequestDenied(*problems, prefix="invalid request: ")
    if not request.trust_domain:
        return DEFAULT_APP_TRUST_DOMAIN
    try:
        return TrustDomain.parse(request.trust_domain)
    except InvalidSpiffeId as err:
        raise RequestDenied(str(err)) from err


@dataclass(frozen=True, slots=True)
class InsecureValidator:
    """The standalone default: the common checks only; the caller's claims are trusted."""

    @property
    def kind(self) -> TokenValidator:
        return TokenValidator.INSECURE

    @property
    def health_target(self) -> str | None:
        return None

    def ready(self) -> bool:
        return True

    async def start(self) -> None:
        return None

    async def run(self) -> None:
        return None

    async def validate(self, request: SignRequest) -> TrustDomain:
        return validate_common(request)
