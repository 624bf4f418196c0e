"""Certificate profiles: Dapr's root and issuer CA certificates (§5.1) and workload SVIDs (§6).

Key usage is Dapr v1.16's (the Go peers we test against): DigitalSignature|KeyEncipherment on
every certificate, plus CertSign on the root and CertSign|CRLSign on the issuer.

Extensions are encoded as Go's ``x509.CreateCertificate`` does: basicConstraints and keyUsage
critical, SAN critical because the subject is empty, SKID on CA certificates, AKID on workload
certificates. Dapr v1.16's generated issuer has no AKID (Go takes it from the parent
*template*, which has no SKID); ours keeps one, because OpenSSL, unlike Go, does not try every
root with a matching name, and during a root rotation the old and new roots share their name
(docs/choices.md). The signature algorithm follows the signer's key type.
Beyond Dapr, a leaf's NotAfter is clamped to its issuer's NotAfter (``IssuedLeaf.clamped``).
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pysentry.pki.csr import signature_hash
from pysentry.pki.keys import PrivateKey, PublicKey
from pysentry.spiffe import SpiffeId, TrustDomain

DEFAULT_CA_TTL = timedelta(days=365)
DEFAULT_WORKLOAD_TTL = timedelta(hours=24)
DEFAULT_CLOCK_SKEW = timedelta(minutes=15)
SERIAL_LIMIT = 2**128
SENTRY_APP_ID = "dapr-sentry"
_WORKLOAD_EKUS = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]


def random_serial() -> int:
    """Uniform in ``[1, 2**128)`` (cryptography refuses serial 0)."""
    return secrets.randbelow(SERIAL_LIMIT - 1) + 1


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError(f"now must be timezone-aware, got {now!r}")
    return now.astimezone(UTC)


def _key_usage(*, cert_sign: bool, crl_sign: bool) -> x509.KeyUsage:
    """Dapr v1.16 ``generateBaseCert``: DigitalSignature|KeyEncipherment on every certificate."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=True,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


_WORKLOAD_KEY_USAGE = _key_usage(cert_sign=False, crl_sign=False)
_WORKLOAD_EKU = x509.ExtendedKeyUsage(_WORKLOAD_EKUS)


def authority_key_identifier(issuer_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """AKID from the issuer's SKID when it has one, else derived from its public key."""
    try:
        skid = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer_cert.public_key()  # type: ignore[arg-type]
        )
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(skid)


@functools.lru_cache(maxsize=16)
def _issuer_akid(issuer_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """:func:`authority_key_identifier`, once per issuer (a Sentry signs with one at a time)."""
    return authority_key_identifier(issuer_cert)


def _ca_builder(
    subject: x509.Name, public_key: PublicKey, *, now: datetime, ttl: timedelta, skew: timedelta
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .serial_number(random_serial())
        .subject_name(subject)
        .public_key(public_key)
        .not_valid_before(now - skew)
        .not_valid_after(now + ttl)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def root_certificate(
    key: PrivateKey,
    trust_domain: TrustDomain,
    *,
    now: datetime,
    ttl: timedelta = DEFAULT_CA_TTL,
    skew: timedelta = DEFAULT_CLOCK_SKEW,
) -> x509.Certificate:
    """Self-signed root: ``O=<trust domain>``, KU digitalSignature+keyEncipherment+certSign,
    CA without pathlen."""
    now = _utc(now)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain.name)])
    builder = (
        _ca_builder(subject, key.public_key(), now=now, ttl=ttl, skew=skew)
        .issuer_name(subject)
        .add_extension(_key_usage(cert_sign=True, crl_sign=False), critical=True)
    )
    return builder.sign(key, signature_hash(key))


def issuer_certificate(
    public_key: PublicKey,
    *,
    root_cert: x509.Certificate,
    root_key: PrivateKey,
    trust_domain: TrustDomain,
    namespace: str,
    now: datetime,
    ttl: timedelta = DEFAULT_CA_TTL,
    skew: timedelta = DEFAULT_CLOCK_SKEW,
) -> x509.Certificate:
    """Issuer CA: ``O=spiffe://<td>/ns/<namespace>/dapr-sentry``, KU +certSign+cRLSign, AKID."""
    now = _utc(now)
    sentry_id = SpiffeId.for_app(trust_domain, namespace, SENTRY_APP_ID)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, str(sentry_id))])
    builder = (
        _ca_builder(subject, public_key, now=now, ttl=ttl, skew=skew)
        .issuer_name(root_cert.subject)
        .add_extension(_key_usage(cert_sign=True, crl_sign=True), critical=True)
        # Beyond Dapr (docs/choices.md): without it OpenSSL cannot tell two roots with the same
        # name apart (every root rotation) and picks the wrong one.
        .add_extension(authority_key_identifier(root_cert), critical=False)
    )
    return builder.sign(root_key, signature_hash(root_key))


@dataclass(frozen=True, slots=True)
class IssuedLeaf:
    """A signed workload certificate; ``clamped`` is True if NotAfter was cut to the issuer's."""

    cert: x509.Certificate
    clamped: bool


def workload_certificate(
    public_key: PublicKey,
    spiffe_id: SpiffeId,
    *,
    issuer_cert: x509.Certificate,
    issuer_key: PrivateKey,
    now: datetime,
    ttl: timedelta = DEFAULT_WORKLOAD_TTL,
    skew: timedelta = DEFAULT_CLOCK_SKEW,
    dns_names: Sequence[str] = (),
) -> IssuedLeaf:
    """Workload SVID (§6): empty subject, one critical URI SAN, KU digitalSignature and
    keyEncipherment (Dapr v1.12-v1.17), EKUs serverAuth, clientAuth."""
    now = _utc(now)
    not_after = now + ttl
    issuer_not_after = issuer_cert.not_valid_after_utc
    clamped = not_after > issuer_not_after
    if clamped:
        not_after = issuer_not_after
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(str(spiffe_id))]
    names.extend(x509.DNSName(name) for name in dns_names)
    builder = (
        x509.CertificateBuilder()
        .serial_number(random_serial())
        .subject_name(x509.Name([]))
        .issuer_name(issuer_cert.subject)
        .public_key(public_key)
        .not_valid_before(now - skew)
        .not_valid_after(not_after)
        .add_extension(_WORKLOAD_KEY_USAGE, critical=True)
        .add_extension(_WORKLOAD_EKU, critical=False)
        .add_extension(_issuer_akid(issuer_cert), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=True)
    )
    return IssuedLeaf(builder.sign(issuer_key, signature_hash(issuer_key)), clamped)
