"""Certificates with arbitrary shapes for pki tests (step-like CAs, broken CAs, odd leaves)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.x509.oid import NameOID

from pysentry.pki.csr import signature_hash
from pysentry.pki.keys import PrivateKey
from pysentry.pki.pem import encode_pem
from pysentry.pki.profiles import random_serial

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def make_cert(
    cn: str,
    key: PrivateKey,
    parent: tuple[x509.Certificate, PrivateKey] | None = None,
    *,
    ca: bool | None = True,
    pathlen: int | None = None,
    cert_sign: bool = True,
    eku: tuple[x509.ObjectIdentifier, ...] = (),
    not_before: datetime = NOW - timedelta(days=1),
    not_after: datetime = NOW + timedelta(days=90),
) -> x509.Certificate:
    """A certificate shaped like ``step certificate create --profile root-ca|intermediate-ca``."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer_name, signer = (name, key) if parent is None else (parent[0].subject, parent[1])
    builder = (
        x509.CertificateBuilder()
        .serial_number(random_serial())
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, cert_sign, cert_sign, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=pathlen if ca else None), critical=True
        )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    return builder.sign(signer, signature_hash(signer))


EC_PUBLIC_KEY_OID = bytes.fromhex("06072a8648ce3d0201")  # DER of 1.2.840.10045.2.1


def unknown_key_algorithm(block: str, der: bytes) -> bytes:
    """PEM of ``der`` with its id-ecPublicKey OID turned into one no library knows (...2.127)."""
    assert der.count(EC_PUBLIC_KEY_OID) == 1
    return encode_pem(block, der.replace(EC_PUBLIC_KEY_OID, EC_PUBLIC_KEY_OID[:-1] + b"\x7f"))
