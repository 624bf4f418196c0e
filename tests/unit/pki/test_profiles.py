"""pysentry.pki.profiles: root and issuer (§5.1) and workload (§6) certificates, field by field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID

from pysentry.pki.keys import KeyAlgorithm, PrivateKey, generate_key, same_public_key
from pysentry.pki.profiles import (
    DEFAULT_CLOCK_SKEW,
    DEFAULT_WORKLOAD_TTL,
    SERIAL_LIMIT,
    issuer_certificate,
    random_serial,
    root_certificate,
    workload_certificate,
)
from pysentry.spiffe import SpiffeId, TrustDomain

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
TD = TrustDomain("cluster.local")
APP = SpiffeId.for_app("public", "default", "myapp")

SIG_ALGS = {
    "p256": SignatureAlgorithmOID.ECDSA_WITH_SHA256,
    "p384": SignatureAlgorithmOID.ECDSA_WITH_SHA384,
    "ed25519": SignatureAlgorithmOID.ED25519,
    "rsa": SignatureAlgorithmOID.RSA_WITH_SHA256,
}


def _key(kind: str) -> PrivateKey:
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return generate_key(KeyAlgorithm.ED25519 if kind == "ed25519" else KeyAlgorithm.EC_P256)


def _ext(
    cert: x509.Certificate, kind: type[x509.ExtensionType]
) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(kind)


def _ca_pair(
    kind: str = "p256",
) -> tuple[x509.Certificate, PrivateKey, x509.Certificate, PrivateKey]:
    root_key, issuer_key = _key(kind), _key(kind)
    root = root_certificate(root_key, TD, now=NOW)
    issuer = issuer_certificate(
        issuer_key.public_key(),
        root_cert=root,
        root_key=root_key,
        trust_domain=TD,
        namespace="dapr-system",
        now=NOW,
    )
    return root, root_key, issuer, issuer_key


@pytest.fixture(scope="module")
def pair() -> tuple[x509.Certificate, PrivateKey, x509.Certificate, PrivateKey]:
    return _ca_pair()


def test_root_profile(
    pair: tuple[x509.Certificate, PrivateKey, x509.Certificate, PrivateKey],
) -> None:
    root, root_key, _, _ = pair
    assert root.version == x509.Version.v3
    assert root.subject == x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cluster.local")]
    )
    assert root.issuer == root.subject
    assert root.not_valid_before_utc == NOW - DEFAULT_CLOCK_SKEW
    assert root.not_valid_after_utc == NOW + timedelta(days=365)
    bc = _ext(root, x509.BasicConstraints)
    assert bc.critical and bc.value == x509.BasicConstraints(ca=True, path_length=None)
    ku = _ext(root, x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature and ku.value.key_cert_sign and not ku.value.crl_sign
    assert (
        ku.value.key_encipherment
    )  # Dapr v1.16 generateBaseCert: DigitalSignature|KeyEncipherment
    assert _ext(root, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(
        root_key.public_key()
    )
    types = {type(e.value) for e in root.extensions}
    assert types == {x509.BasicConstraints, x509.KeyUsage, x509.SubjectKeyIdentifier}
    root.verify_directly_issued_by(root)


def test_issuer_profile(
    pair: tuple[x509.Certificate, PrivateKey, x509.Certificate, PrivateKey],
) -> None:
    root, _, issuer, issuer_key = pair
    assert issuer.subject == x509.Name(
        [
            x509.NameAttribute(
                NameOID.ORGANIZATION_NAME, "spiffe://cluster.local/ns/dapr-system/dapr-sentry"
            )
        ]
    )
    assert issuer.issuer == root.subject
    assert same_public_key(issuer.public_key(), issuer_key.public_key())
    bc = _ext(issuer, x509.BasicConstraints)
    assert bc.critical and bc.value == x509.BasicConstraints(ca=True, path_length=None)
    ku = _ext(issuer, x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature and ku.value.key_cert_sign and ku.value.crl_sign
    assert ku.value.key_encipherment
    # Dapr v1.16's generated issuer has no AKID (tests/interop/test_real_dapr_pki.py); ours has
    # one, naming the root's key, so OpenSSL can tell two same-named roots apart.
    types = {type(e.value) for e in issuer.extensions}
    assert types == {
        x509.BasicConstraints,
        x509.KeyUsage,
        x509.SubjectKeyIdentifier,
        x509.AuthorityKeyIdentifier,
    }
    aki = _ext(issuer, x509.AuthorityKeyIdentifier)
    assert not aki.critical
    assert aki.value.key_identifier == _ext(root, x509.SubjectKeyIdentifier).value.digest
    issuer.verify_directly_issued_by(root)


@pytest.mark.parametrize("kind", ["p256", "p384", "ed25519", "rsa"], ids=lambda k: f"issuer-{k}")
def test_signature_algorithm_follows_issuer_key(kind: str) -> None:
    root, _, issuer, issuer_key = _ca_pair(kind)
    assert root.signature_algorithm_oid == SIG_ALGS[kind]
    leaf = workload_certificate(
        generate_key(KeyAlgorithm.ED25519).public_key(),
        APP,
        issuer_cert=issuer,
        issuer_key=issuer_key,
        now=NOW,
    ).cert
    assert leaf.signature_algorithm_oid == SIG_ALGS[kind]
    if kind == "ed25519":
        assert leaf.signature_hash_algorithm is None
    leaf.verify_directly_issued_by(issuer)


def test_workload_profile(
    pair: tuple[x509.Certificate, PrivateKey, x509.Certificate, PrivateKey],
) -> None:
    _, _, issuer, issuer_key = pair
    key = generate_key()
    issued = workload_certificate(
        key.public_key(), APP, issuer_cert=issuer, issuer_key=issuer_key, now=NOW
    )
    leaf = issued.cert
    assert not issued.clamped
    assert leaf.version == x509.Version.v3
    assert len(leaf.subject) == 0
    assert leaf.issuer == issuer.subject
    assert leaf.not_valid_before_utc == NOW - DEFAULT_CLOCK_SKEW
    assert leaf.not_valid_after_utc == NOW + DEFAULT_WORKLOAD_TTL
    assert 1 <= leaf.serial_number < SERIAL_LIMIT
    assert same_public_key(leaf.public_key(), key.public_key())
    san = _ext(leaf, x509.SubjectAlternativeName)
    assert san.critical
    assert list(san.value) == [x509.UniformResourceIdentifier("spiffe://public/ns/default/myapp")]
    ku = _ext(leaf, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.key_encipherment
    assert not (ku.value.key_cert_sign or ku.value.crl_sign or ku.value.key_agreement)
    eku = _ext(leaf, x509.ExtendedKeyUsage)
    assert not eku.critical
    assert list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    akid = _ext(leaf, x509.AuthorityKeyIdentifier).value
    assert akid.key_identifier == _ext(issuer, x509.SubjectKeyIdentifier).value.digest
    types = {type(e.value) for e in leaf.extensions}
    assert types == {
        x509.SubjectAlternativeName,
        x509.KeyUsage,
        x509.ExtendedKeyUsage,
        x509.AuthorityKeyIdentifier,
    }


def test_workload_dns_names(
    pair: tuple[x509.Certificate, PrivateKey, x509.Certificate, PrivateKey],
) -> None:
    _, _, issuer, issuer_key = pair
    leaf = workload_certificate(
        generate_key().public_key(),
        APP,
        issuer_cert=issuer,
        issuer_key=issuer_key,
        now=NOW,
        dns_names=("dapr-sidecar-injector.dapr-system.svc",),
    ).cert
    san = _ext(leaf, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [str(APP)]
    assert san.get_values_for_type(x509.DNSName) == ["dapr-sidecar-injector.dapr-system.svc"]


@pytest.mark.parametrize(
    ("ttl", "clamped"),
    [(timedelta(days=364), False), (timedelta(days=365), False), (timedelta(days=400), True)],
    ids=["inside", "exactly-at-issuer-expiry", "beyond-issuer-expiry"],
)
def test_leaf_not_after_clamped_to_issuer(
    pair: tuple[x509.Certificate, PrivateKey, x509.Certificate, PrivateKey],
    ttl: timedelta,
    clamped: bool,
) -> None:
    _, _, issuer, issuer_key = pair
    issued = workload_certificate(
        generate_key().public_key(),
        APP,
        issuer_cert=issuer,
        issuer_key=issuer_key,
        now=NOW,
        ttl=ttl,
    )
    assert issued.clamped is clamped
    assert issued.cert.not_valid_after_utc == min(NOW + ttl, issuer.not_valid_after_utc)


def test_custom_skew_and_ttl(
    pair: tuple[x509.Certificate, PrivateKey, x509.Certificate, PrivateKey],
) -> None:
    _, _, issuer, issuer_key = pair
    leaf = workload_certificate(
        generate_key().public_key(),
        APP,
        issuer_cert=issuer,
        issuer_key=issuer_key,
        now=NOW,
        ttl=timedelta(minutes=5),
        skew=timedelta(0),
    ).cert
    assert leaf.not_valid_before_utc == NOW
    assert leaf.not_valid_after_utc == NOW + timedelta(minutes=5)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        root_certificate(generate_key(), TD, now=datetime(2026, 1, 1))


def test_serials_are_random_and_in_range() -> None:
    serials = {random_serial() for _ in range(200)}
    assert len(serials) == 200
    assert all(1 <= s < SERIAL_LIMIT for s in serials)


def test_ed25519_issuer_key_types() -> None:
    _, _, issuer, issuer_key = _ca_pair("ed25519")
    assert isinstance(issuer_key, ed25519.Ed25519PrivateKey)
    assert isinstance(issuer.public_key(), ed25519.Ed25519PublicKey)
