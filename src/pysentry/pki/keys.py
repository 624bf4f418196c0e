"""Private and public keys: generate, load (SEC1 / PKCS#1 / PKCS#8 PEM), dump (PKCS#8).

``generate_key(KeyAlgorithm.EC_P256)``, ``load_private_key(pem)``, ``dump_private_key(key)``.
Loading failures are :class:`pysentry.errors.InvalidKey` with one message per problem (empty input,
not PEM, encrypted, unknown block type, unparsable block, unsupported key), each with a fix.
"""

from __future__ import annotations

from enum import StrEnum

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_der_private_key,
)

from pysentry.errors import InvalidKey
from pysentry.pki.pem import decode_pem, encode_pem

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey

MIN_RSA_BITS = 2048
_PRIVATE_TYPES = (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, rsa.RSAPrivateKey)
SUPPORTED_CURVES = ("secp256r1", "secp384r1")
_EXPECTED = (
    "expected a PEM 'PRIVATE KEY' (PKCS#8), 'EC PRIVATE KEY' (SEC1) or "
    "'RSA PRIVATE KEY' (PKCS#1) block"
)
_DECRYPT_HINT = "decrypt it first, e.g. 'openssl pkey -in issuer.key -out issuer.key.plain'"
_KEY_BLOCKS = {"PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"}
_SKIPPED_BLOCKS = {"EC PARAMETERS"}  # written before the key by 'openssl ecparam -genkey'


class KeyAlgorithm(StrEnum):
    """Key types pysentry can generate."""

    EC_P256 = "ecdsa-p256"
    ED25519 = "ed25519"
    RSA = "rsa"


def generate_key(
    algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256, *, rsa_bits: int = 2048
) -> PrivateKey:
    """A fresh private key. RSA below 2048 bits is refused."""
    if algorithm == KeyAlgorithm.EC_P256:
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == KeyAlgorithm.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == KeyAlgorithm.RSA:
        if rsa_bits < MIN_RSA_BITS:
            raise InvalidKey(
                f"RSA key size {rsa_bits!r} is too small: use at least {MIN_RSA_BITS} bits"
            )
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    raise InvalidKey(f"unsupported key algorithm {algorithm!r}")  # pragma: no cover


def _describe(key: object) -> str:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name}"
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "Ed25519"
    return type(key).__name__


def load_private_key(pem: bytes) -> PrivateKey:
    """Load an unencrypted ECDSA, Ed25519 or RSA private key from PEM (first key block)."""
    if not pem.strip():
        raise InvalidKey(f"private key is empty: {_EXPECTED}")
    blocks = [b for b in decode_pem(pem) if b.type not in _SKIPPED_BLOCKS]
    if not blocks:
        raise InvalidKey(f"private key is not PEM-encoded: no PEM block found; {_EXPECTED}")
    block = blocks[0]
    if block.type == "ENCRYPTED PRIVATE KEY" or "ENCRYPTED" in (block.header("Proc-Type") or ""):
        raise InvalidKey(
            f"private key is encrypted ({block.type!r}): pysentry needs an unencrypted key; "
            + _DECRYPT_HINT
        )
    if block.type not in _KEY_BLOCKS:
        raise InvalidKey(f"unsupported block type {block.type!r}: {_EXPECTED}")
    try:
        key = load_der_private_key(block.der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise InvalidKey(
            f"failed to parse {block.type!r} block: the key data is corrupt or of another "
            f"format ({err}); {_EXPECTED}"
        ) from err
    if not isinstance(key, _PRIVATE_TYPES):
        raise InvalidKey(
            f"unsupported private key type {_describe(key)!r}: use ECDSA, Ed25519 or RSA"
        )
    if block.type == "EC PRIVATE KEY" and not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidKey(f"'EC PRIVATE KEY' block holds a {_describe(key)} key, not ECDSA")
    if block.type == "RSA PRIVATE KEY" and not isinstance(key, rsa.RSAPrivateKey):
        raise InvalidKey(f"'RSA PRIVATE KEY' block holds a {_describe(key)} key, not RSA")
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < MIN_RSA_BITS:
        raise InvalidKey(
            f"RSA key size {key.key_size!r} is too small: use at least {MIN_RSA_BITS} bits"
        )
    return key


def dump_private_key(key: PrivateKey) -> bytes:
    """PKCS#8 ``PRIVATE KEY`` PEM, unencrypted."""
    der = key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    return encode_pem("PRIVATE KEY", der)


def public_key_bytes(pub: CertificatePublicKeyTypes) -> bytes:
    """DER SubjectPublicKeyInfo of a public key (any key a certificate can hold)."""
    return pub.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def same_public_key(a: CertificatePublicKeyTypes, b: CertificatePublicKeyTypes) -> bool:
    """True if both public keys are the same key."""
    return public_key_bytes(a) == public_key_bytes(b)


def check_supported_public_key(pub: object) -> None:
    """Accept P-256, P-384, Ed25519 and RSA >= 2048; raise :class:`InvalidKey` otherwise."""
    if isinstance(pub, ed25519.Ed25519PublicKey):
        return
    if isinstance(pub, ec.EllipticCurvePublicKey):
        if pub.curve.name not in SUPPORTED_CURVES:
            raise InvalidKey(
                f"ECDSA curve {pub.curve.name!r} is not supported: use P-256 (prime256v1) or P-384"
            )
        return
    if isinstance(pub, rsa.RSAPublicKey):
        if pub.key_size < MIN_RSA_BITS:
            raise InvalidKey(
                f"RSA key size {pub.key_size!r} is too small: use at least {MIN_RSA_BITS} bits"
            )
        return
    raise InvalidKey(f"key type {_describe(pub)!r} is not supported: use ECDSA, Ed25519 or RSA")
