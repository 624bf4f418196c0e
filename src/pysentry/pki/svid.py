"""X.509-SVID verification as go-spiffe's ``x509svid.Verify`` plus ``tlsconfig`` authorizers (§9.6).

``verify_svid(chain, anchors, now=..., authorizer=authorize_path("/ns/default/app"))`` returns the
peer's SPIFFE ID or raises :class:`pysentry.errors.PeerRejected` with go-spiffe-like text.
Authorization is a plain function value kept apart from chain verification.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from cryptography import x509

from pysentry.errors import InvalidSpiffeId, PeerRejected
from pysentry.pki.chain import ChainError, is_ca, verify_chain
from pysentry.spiffe import SpiffeId

Authorizer = Callable[[SpiffeId], None]


class UntrustedChain(PeerRejected):
    """The peer's chain does not verify against the trust anchors (wrong, expired, missing CA)."""


def authorize_any() -> Authorizer:
    """Accept any SPIFFE ID that chains to the anchors (``tlsconfig.AuthorizeAny``)."""

    def authorize(_: SpiffeId) -> None:
        return None

    return authorize


def authorize_id(expected: SpiffeId) -> Authorizer:
    """Accept exactly ``expected`` (``tlsconfig.AuthorizeID``)."""

    def authorize(actual: SpiffeId) -> None:
        if actual != expected:
            raise PeerRejected(
                f"unexpected SPIFFE ID: {str(actual)!r} (expected {str(expected)!r})"
            )

    return authorize


def authorize_path(path: str) -> Authorizer:
    """Accept any trust domain whose ID path equals ``path`` (Dapr's daprd-to-daprd dialer)."""

    def authorize(actual: SpiffeId) -> None:
        if actual.path != path:
            raise PeerRejected(f"unexpected SPIFFE ID: {str(actual)!r}")

    return authorize


def id_from_cert(cert: x509.Certificate) -> SpiffeId:
    """The SPIFFE ID of the certificate's only URI SAN (go-spiffe ``x509svid.IDFromCert``)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    if not uris:
        raise PeerRejected("certificate contains no URI SAN")
    if len(uris) > 1:
        raise PeerRejected("certificate contains more than one URI SAN")
    try:
        return SpiffeId.parse(uris[0])
    except InvalidSpiffeId as err:
        raise PeerRejected(f"certificate URI SAN is not a valid SPIFFE ID: {err}") from err


def verify_svid(
    chain: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    *,
    now: datetime,
    authorizer: Authorizer | None = None,
) -> SpiffeId:
    """Verify ``chain`` (leaf first) against ``anchors`` at ``now``, then run ``authorizer``."""
    if not chain:
        raise PeerRejected("x509svid: empty certificates chain")
    leaf = chain[0]
    try:
        spiffe_id = id_from_cert(leaf)
    except PeerRejected as err:
        raise PeerRejected(f"x509svid: could not get leaf SPIFFE ID: {err}") from err
    if is_ca(leaf):
        raise PeerRejected("x509svid: leaf certificate with CA flag set to true")
    try:
        usage: x509.KeyUsage | None = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and usage.key_cert_sign:
        raise PeerRejected("x509svid: leaf certificate with KeyCertSign key usage")
    if usage is not None and usage.crl_sign:
        raise PeerRejected("x509svid: leaf certificate with KeyCrlSign key usage")
    if not anchors:
        raise PeerRejected(
            f"x509svid: could not get X509 bundle: no X.509 bundle for trust domain "
            f"{spiffe_id.trust_domain.name!r}"
        )
    try:
        verify_chain(leaf, chain[1:], anchors, now=now)
    except ChainError as err:
        raise UntrustedChain(f"x509svid: could not verify leaf certificate: {err}") from err
    (authorizer or authorize_any())(spiffe_id)
    return spiffe_id
