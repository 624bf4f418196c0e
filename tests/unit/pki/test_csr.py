"""pysentry.pki.csr: build_csr and Dapr's parse order and messages (§7.2 steps 4-6)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from pysentry.errors import InvalidCsr
from pysentry.pki.csr import build_csr, parse_csr
from pysentry.pki.keys import (
    KeyAlgorithm,
    PrivateKey,
    generate_key,
    public_key_bytes,
    same_public_key,
)
from pysentry.pki.pem import decode_pem, encode_pem
from tests.unit.pki.factory import unknown_key_algorithm

DATA = Path(__file__).parents[2] / "data" / "pki"


def _p384() -> PrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def _rsa(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: generate_key(KeyAlgorithm.EC_P256),
        _p384,
        lambda: generate_key(KeyAlgorithm.ED25519),
        lambda: _rsa(2048),
    ],
    ids=["p256", "p384", "ed25519", "rsa2048"],
)
def test_build_and_parse_round_trip(make_key: object) -> None:
    key = make_key()  # type: ignore[operator]
    pem = build_csr(key)
    assert pem.startswith(b"-----BEGIN CERTIFICATE REQUEST-----\n")
    csr = x509.load_pem_x509_csr(pem)
    assert len(csr.subject) == 0
    assert len(csr.extensions) == 0
    assert same_public_key(parse_csr(pem), key.public_key())


def test_subject_and_extensions_are_ignored() -> None:
    key = generate_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evil")]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier("spiffe://evil/x")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    assert same_public_key(parse_csr(csr.public_bytes(Encoding.PEM)), key.public_key())


def test_legacy_certificate_block_type_accepted() -> None:
    key = generate_key()
    der = decode_pem(build_csr(key))[0].der
    assert same_public_key(parse_csr(encode_pem("CERTIFICATE", der)), key.public_key())


def _tampered_signature() -> bytes:
    der = bytearray(decode_pem(build_csr(generate_key(KeyAlgorithm.ED25519)))[0].der)
    der[-1] ^= 0x01  # last byte of the Ed25519 signature
    return encode_pem("CERTIFICATE REQUEST", bytes(der))


def _unknown_key_algorithm() -> bytes:
    der = decode_pem(build_csr(generate_key()))[0].der
    return unknown_key_algorithm("CERTIFICATE REQUEST", der)


def _swapped_key() -> bytes:
    """A CSR whose public key was replaced after signing: proof of possession fails."""
    signed = decode_pem(build_csr(generate_key()))[0].der
    other = generate_key().public_key()
    old_pub = x509.load_der_x509_csr(signed).public_key()
    old = public_key_bytes(old_pub)
    swapped = signed.replace(old, public_key_bytes(other))
    assert swapped != signed
    return encode_pem("CERTIFICATE REQUEST", swapped)


@pytest.mark.parametrize(
    ("make_pem", "message"),
    [
        (lambda: b"", r"^invalid certificate signing request$"),
        (lambda: b"not a csr at all", r"^invalid certificate signing request$"),
        (lambda: (DATA / "p256.pkcs8.key").read_bytes(), r"^invalid certificate signing request$"),
        (
            lambda: encode_pem("CERTIFICATE REQUEST", b"\x30\x03\x02\x01\x00"),
            r"^failed to parse certificate signing request: ",
        ),
        (
            lambda: encode_pem("CERTIFICATE REQUEST", base64.b64decode("AAAA")),
            r"^failed to parse certificate signing request: ",
        ),
        (_tampered_signature, r"^invalid signature$"),
        (_swapped_key, r"^invalid signature$"),
        (_unknown_key_algorithm, r"^invalid signature$"),
        (
            lambda: build_csr(_rsa(1024)),
            r"^unsupported public key: RSA key size 1024 is too small",
        ),
        (
            lambda: build_csr(ec.generate_private_key(ec.SECP521R1())),
            r"^unsupported public key: ECDSA curve 'secp521r1' is not supported",
        ),
        (
            lambda: build_csr(ec.generate_private_key(ec.SECP224R1())),
            r"^unsupported public key: ECDSA curve 'secp224r1' is not supported",
        ),
    ],
    ids=[
        "empty",
        "garbage",
        "wrong-pem-type",
        "bad-der",
        "short-der",
        "tampered-signature",
        "swapped-public-key",
        "unknown-key-algorithm",
        "rsa1024",
        "p521",
        "p224",
    ],
)
def test_bad_csrs(make_pem: object, message: str) -> None:
    with pytest.raises(InvalidCsr, match=message):
        parse_csr(make_pem())  # type: ignore[operator]
