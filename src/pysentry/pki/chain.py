"""X.509 path validation with Go's ``crypto/x509`` semantics, for Ed25519, ECDSA and RSA chains.

``verify_chain(leaf, intermediates, roots, now=...)`` returns the first chain found
``(leaf, ..., root)`` or raises :class:`ChainError` with Go-like text (``x509: certificate has
expired or is not yet valid: ...``, ``x509: certificate signed by unknown authority``).
We do not use ``cryptography.x509.verification``: it enforces the Web PKI
profile and rejects Ed25519 chains.
Callers translate :class:`ChainError` into their own error (``InvalidBundle``, ``PeerRejected``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.x509.oid import ExtendedKeyUsageOID

MAX_CHAIN_DEPTH = 8


class ChainError(ValueError):
    """A chain that does not verify. Internal to ``pki``: callers re-raise their own error."""


def _basic_constraints(cert: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None


def _key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def is_ca(cert: x509.Certificate) -> bool:
    bc = _basic_constraints(cert)
    return bc is not None and bc.ca


def _go_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_validity(cert: x509.Certificate, now: datetime) -> None:
    """Go's expiry check at ``now`` (both bounds inclusive)."""
    if now < cert.not_valid_before_utc:
        raise ChainError(
            "x509: certificate has expired or is not yet valid: current time "
            f"{_go_time(now)} is before {_go_time(cert.not_valid_before_utc)}"
        )
    if now > cert.not_valid_after_utc:
        raise ChainError(
            "x509: certificate has expired or is not yet valid: current time "
            f"{_go_time(now)} is after {_go_time(cert.not_valid_after_utc)}"
        )


def check_signature_from(child: x509.Certificate, parent: x509.Certificate) -> None:
    """Go's ``CheckSignatureFrom``: the parent is a CA that may sign, and the signature is valid."""
    bc = _basic_constraints(parent)
    if (parent.version == x509.Version.v3 and bc is None) or (bc is not None and not bc.ca):
        raise ChainError(
            "x509: invalid signature: parent certificate cannot sign this kind of certificate "
            "(it is not a CA: basicConstraints CA:true is missing)"
        )
    ku = _key_usage(parent)
    if ku is not None and not ku.key_cert_sign:
        raise ChainError(
            "x509: invalid signature: parent certificate cannot sign this kind of certificate "
            "(its keyUsage lacks keyCertSign)"
        )
    try:
        child.verify_directly_issued_by(parent)
    except InvalidSignature as err:
        raise ChainError("x509: signature verification failure") from err
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise ChainError(f"x509: signature check failed: {err}") from err


def _check_candidate(
    cand: x509.Certificate, chain: tuple[x509.Certificate, ...], now: datetime
) -> None:
    check_validity(cand, now)
    bc = _basic_constraints(cand)
    if bc is None or not bc.ca:
        raise ChainError("x509: certificate is not authorized to sign other certificates")
    if bc.path_length is not None and len(chain) - 1 > bc.path_length:
        raise ChainError("x509: too many intermediates for path length constraint")


def _has_server_auth(cert: x509.Certificate) -> bool:
    try:
        ekus = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    allowed = {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
    return any(oid in allowed for oid in ekus)


def verify_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    *,
    now: datetime,
    require_server_auth: bool = False,
) -> tuple[x509.Certificate, ...]:
    """Build and check a path from ``leaf`` to one of ``roots`` through ``intermediates``.

    ``require_server_auth`` mirrors Go's default ``VerifyOptions.KeyUsages = [ServerAuth]``: every
    certificate in the chain that carries an EKU extension must allow serverAuth (or any).
    """
    if now.tzinfo is None:
        raise ValueError(f"now must be timezone-aware, got {now!r}")
    check_validity(leaf, now)
    if leaf in roots:
        return (leaf,)
    hints: list[tuple[ChainError, x509.Certificate]] = []

    def build(chain: tuple[x509.Certificate, ...]) -> tuple[x509.Certificate, ...] | None:
        cert = chain[-1]
        candidates = [(True, r) for r in roots] + [(False, i) for i in intermediates]
        for is_root, cand in candidates:
            if cand in chain or cand.subject != cert.issuer:
                continue
            try:
                check_signature_from(cert, cand)
                _check_candidate(cand, chain, now)
            except ChainError as err:
                hints.append((err, cand))
                continue
            if is_root:
                return (*chain, cand)
            if len(chain) < MAX_CHAIN_DEPTH:
                found = build((*chain, cand))
                if found is not None:
                    return found
        return None

    found = build((leaf,))
    if found is None:
        message = "x509: certificate signed by unknown authority"
        if hints:
            err, cand = hints[0]
            message += (
                f" (possibly because of {str(err)!r} while trying to verify candidate "
                f"authority certificate {cand.subject.rfc4514_string()!r})"
            )
        raise ChainError(message)
    if require_server_auth and not all(_has_server_auth(cert) for cert in found):
        raise ChainError("x509: certificate specifies an incompatible key usage")
    return found
