"""pysentry.pki.keys: generate, load every accepted format, refuse every bad input clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from pysentry.errors import InvalidKey
from pysentry.pki.keys import (
    KeyAlgorithm,
    check_supported_public_key,
    dump_private_key,
    generate_key,
    load_private_key,
    public_key_bytes,
    same_public_key,
)

DATA = Path(__file__).parents[2] / "data" / "pki"


@pytest.mark.parametrize(
    ("algorithm", "kind"),
    [
        (KeyAlgorithm.EC_P256, ec.EllipticCurvePrivateKey),
        (KeyAlgorithm.ED25519, ed25519.Ed25519PrivateKey),
        (KeyAlgorithm.RSA, rsa.RSAPrivateKey),
    ],
    ids=["p256", "ed25519", "rsa"],
)
def test_generate_dump_load_round_trip(algorithm: KeyAlgorithm, kind: type) -> None:
    key = generate_key(algorithm)
    assert isinstance(key, kind)
    pem = dump_private_key(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    loaded = load_private_key(pem)
    assert same_public_key(loaded.public_key(), key.public_key())
    assert dump_private_key(loaded) == pem


def test_default_algorithm_is_p256() -> None:
    key = generate_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"


def test_generate_refuses_small_rsa() -> None:
    with pytest.raises(InvalidKey, match=r"RSA key size 1024 is too small: use at least 2048 bits"):
        generate_key(KeyAlgorithm.RSA, rsa_bits=1024)


@pytest.mark.parametrize(
    ("fixture", "kind"),
    [
        ("p256.sec1.key", ec.EllipticCurvePrivateKey),
        ("p256.pkcs8.key", ec.EllipticCurvePrivateKey),
        ("rsa2048.pkcs1.key", rsa.RSAPrivateKey),
        ("ed25519.pkcs8.key", ed25519.Ed25519PrivateKey),
        ("ecparam_genkey.key", ec.EllipticCurvePrivateKey),
    ],
    ids=["sec1-ec", "pkcs8-ec", "pkcs1-rsa", "pkcs8-ed25519", "ecparam-genkey-with-params-block"],
)
def test_loads_openssl_formats(fixture: str, kind: type) -> None:
    key = load_private_key((DATA / fixture).read_bytes())
    assert isinstance(key, kind)
    assert load_private_key(dump_private_key(key)) is not None


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("empty.txt", r"^private key is empty: expected a PEM 'PRIVATE KEY'"),
        ("garbage.txt", r"^private key is not PEM-encoded: no PEM block found; expected"),
        (
            "encrypted.pkcs8.key",
            r"^private key is encrypted \('ENCRYPTED PRIVATE KEY'\).*decrypt it first.*openssl",
        ),
        (
            "encrypted.legacy.key",
            r"^private key is encrypted \('EC PRIVATE KEY'\).*decrypt it first",
        ),
        ("public.pem", r"^unsupported block type 'PUBLIC KEY': expected a PEM 'PRIVATE KEY'"),
        ("corrupt.pkcs8.key", r"^failed to parse 'PRIVATE KEY' block: the key data is corrupt"),
        ("rsa1024.pkcs1.key", r"^RSA key size 1024 is too small: use at least 2048 bits"),
        ("x25519.key", r"^unsupported private key type 'X25519PrivateKey': use ECDSA, Ed25519"),
    ],
    ids=[
        "empty",
        "garbage",
        "encrypted-pkcs8",
        "encrypted-legacy-proc-type",
        "unknown-block",
        "corrupt-der",
        "small-rsa",
        "x25519",
    ],
)
def test_bad_keys_have_distinct_messages(fixture: str, message: str) -> None:
    with pytest.raises(InvalidKey, match=message):
        load_private_key((DATA / fixture).read_bytes())


def test_whitespace_only_is_empty() -> None:
    with pytest.raises(InvalidKey, match=r"^private key is empty"):
        load_private_key(b"  \n\t\n")


def test_block_type_must_match_key() -> None:
    pem = (DATA / "p256.sec1.key").read_bytes().replace(b"EC PRIVATE KEY", b"RSA PRIVATE KEY")
    with pytest.raises(InvalidKey, match="'RSA PRIVATE KEY' block holds a ECDSA secp256r1 key"):
        load_private_key(pem)


def test_messages_never_contain_key_material() -> None:
    pem = (DATA / "corrupt.pkcs8.key").read_bytes()
    with pytest.raises(InvalidKey) as info:
        load_private_key(pem)
    assert "AAAAbm90IGEga2V5" not in str(info.value)


@pytest.mark.parametrize(
    "key",
    [
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        ec.generate_private_key(ec.SECP384R1()).public_key(),
        ed25519.Ed25519PrivateKey.generate().public_key(),
        rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key(),
    ],
    ids=["p256", "p384", "ed25519", "rsa2048"],
)
def test_supported_public_keys(key: object) -> None:
    check_supported_public_key(key)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (
            ec.generate_private_key(ec.SECP521R1()).public_key(),
            "curve 'secp521r1' is not supported",
        ),
        (
            ec.generate_private_key(ec.SECP224R1()).public_key(),
            "curve 'secp224r1' is not supported",
        ),
        (
            ec.generate_private_key(ec.SECP256K1()).public_key(),
            "curve 'secp256k1' is not supported",
        ),
        (
            rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key(),
            "RSA key size 1024 is too small",
        ),
    ],
    ids=["p521", "p224", "secp256k1", "rsa1024"],
)
def test_unsupported_public_keys(key: object, message: str) -> None:
    with pytest.raises(InvalidKey, match=message):
        check_supported_public_key(key)


def test_same_public_key() -> None:
    a, b = generate_key(), generate_key()
    assert same_public_key(a.public_key(), a.public_key())
    assert not same_public_key(a.public_key(), b.public_key())
    assert public_key_bytes(a.public_key()).startswith(b"0Y0")  # DER SEQUENCE of SPKI
