"""What daprd puts in a ``SignCertificate`` request, and what it requires of the response (§9.3).

The request: the validator by its ``TokenValidator`` name (:func:`parse_validator` takes the
configuration's spelling), and ``trust_domain`` only for control-plane IDs in the control-plane
namespace (:func:`request_trust_domain`). The response (:func:`check_response`): ``valid_until``
within Go's ``CheckValid`` range, and a chain that verifies against the anchors, carries the
requested identity and the CSR's key. A response that fails is :class:`SentryRequestFailed`
(``invalid response from Sentry: ...``).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from cryptography import x509

from pysentry.clock import Clock
from pysentry.errors import ConfigError, InvalidBundle, InvalidCsr, PeerRejected
from pysentry.pki.csr import parse_csr
from pysentry.pki.keys import same_public_key
from pysentry.pki.pem import load_certificates
from pysentry.pki.profiles import SENTRY_APP_ID
from pysentry.pki.svid import Authorizer, authorize_id, authorize_path, verify_svid
from pysentry.security.sentry_failure import SentryRequestFailed
from pysentry.security.sentry_wire import SignCertificateRequest, SignCertificateResponse
from pysentry.security.tls import AnchorsLike, anchor_certs
from pysentry.spiffe import SpiffeId, TrustDomain, dapr_path

CONTROL_PLANE_APP_IDS = frozenset(
    {"dapr-operator", "dapr-placement", "dapr-injector", SENTRY_APP_ID, "dapr-scheduler"}
)
_MIN_TS, _MAX_TS = -62135596800, 253402300799  # 0001-01-01 .. 9999-12-31 (CheckValid)


class TokenValidator(StrEnum):
    """``SignCertificateRequest.TokenValidator`` names; config names map by upper-casing."""

    UNKNOWN = "UNKNOWN"
    INSECURE = "INSECURE"
    KUBERNETES = "KUBERNETES"
    JWKS = "JWKS"


def parse_validator(name: TokenValidator | str) -> TokenValidator:
    """A validator name (any case, as in configuration) to the enum; ``ConfigError`` if unknown."""
    try:
        return TokenValidator(str(name).upper())
    except ValueError:
        choices = ", ".join(v.value.lower() for v in TokenValidator)
        raise ConfigError(f"unknown token validator {name!r}: use one of {choices}") from None


def request_trust_domain(
    app_id: str, namespace: str, control_plane_namespace: str, control_plane_trust_domain: str
) -> str:
    """``trust_domain`` is sent only for control-plane IDs in the control-plane namespace."""
    if app_id in CONTROL_PLANE_APP_IDS and namespace == control_plane_namespace:
        return control_plane_trust_domain
    return ""


def sign_request(
    csr_pem: bytes,
    app_id: str,
    namespace: str,
    token: str,
    validator: TokenValidator | str,
    trust_domain: str,
    jwt_audiences: Sequence[str],
) -> SignCertificateRequest:
    return SignCertificateRequest(
        id=app_id,
        token=token,
        trust_domain=trust_domain,
        namespace=namespace,
        certificate_signing_request=csr_pem,
        token_validator=parse_validator(validator).value,
        jwt_audiences=tuple(jwt_audiences),
    )


def check_response(
    response: SignCertificateResponse,
    csr_pem: bytes,
    app_id: str,
    namespace: str,
    trust_domain: str,
    *,
    anchors: AnchorsLike,
    clock: Clock,
) -> tuple[x509.Certificate, ...]:
    """The signed chain (leaf first) of ``response``, checked against the request."""

    def invalid(why: str, reason: str = "sign") -> SentryRequestFailed:
        return SentryRequestFailed(f"invalid response from Sentry: {why}", reason=reason)

    ts = response.valid_until
    if ts is None:
        raise invalid("valid_until is missing", "invalid_ts")
    if not (_MIN_TS <= ts.seconds <= _MAX_TS and 0 <= ts.nanos < 1_000_000_000):
        raise invalid(f"valid_until {ts.seconds}s/{ts.nanos}ns is out of range", "invalid_ts")
    try:
        chain = load_certificates(response.workload_certificate)
    except InvalidBundle as err:
        raise invalid(f"workload_certificate: {err}") from err
    if not chain:
        raise invalid("workload_certificate holds no PEM certificate")
    expected: Authorizer = (
        authorize_id(SpiffeId.for_app(TrustDomain.parse(trust_domain), namespace, app_id))
        if trust_domain
        else authorize_path(dapr_path(namespace, app_id))
    )
    try:
        verify_svid(chain, anchor_certs(anchors), now=clock(), authorizer=expected)
    except PeerRejected as err:
        raise invalid(f"the signed certificate is not acceptable: {err}") from err
    try:
        requested = parse_csr(csr_pem)
    except InvalidCsr as err:
        raise invalid(f"our own CSR does not parse: {err}") from err
    if not same_public_key(chain[0].public_key(), requested):
        raise invalid("the signed certificate is not for the key of the CSR")
    return chain
