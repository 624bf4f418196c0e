"""Certificate signing requests: build one (client side), parse one as Sentry does (§7.2 4-6).

``parse_csr`` keeps only the public key: subject, SANs, extensions and attributes are ignored.
"""

from __future__ import annotations

from typing import cast

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding

from pysentry.errors import InvalidCsr, InvalidKey
from pysentry.pki.keys import PrivateKey, PublicKey, check_supported_public_key
from pysentry.pki.pem import decode_pem

_ACCEPTED_TYPES = ("CERTIFICATE REQUEST", "CERTIFICATE")  # CERTIFICATE: pre-1.12 compatibility


def signature_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None:
    """The hash Go picks for this signer: None (Ed25519), SHA-384 (P-384), SHA-512 (P-521)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name == "secp384r1":
            return hashes.SHA384()
        if key.curve.name == "secp521r1":
            return hashes.SHA512()
    return hashes.SHA256()


def build_csr(key: PrivateKey) -> bytes:
    """PEM ``CERTIFICATE REQUEST`` with an empty subject and no extensions."""
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    return csr.sign(key, signature_hash(key)).public_bytes(Encoding.PEM)


def parse_csr(pem: bytes) -> PublicKey:
    """The CSR's public key after Dapr's checks, in Dapr's order, with Dapr's messages."""
    blocks = decode_pem(pem)
    if not blocks or blocks[0].type not in _ACCEPTED_TYPES:
        raise InvalidCsr("invalid certificate signing request")
    try:
        csr = x509.load_der_x509_csr(blocks[0].der)
        public_key = csr.public_key()
    except UnsupportedAlgorithm as err:
        # Go parses a key of an unknown algorithm as nil; its CheckSignature then fails.
        raise InvalidCsr("invalid signature") from err
    except (ValueError, TypeError, x509.InvalidVersion) as err:  # InvalidVersion: not a ValueError
        raise InvalidCsr(f"failed to parse certificate signing request: {err}") from err
    try:
        valid = csr.is_signature_valid
    except (ValueError, TypeError, UnsupportedAlgorithm):
        valid = False
    if not valid:
        raise InvalidCsr("invalid signature")
    try:
        check_supported_public_key(public_key)
    except InvalidKey as err:
        raise InvalidCsr(f"unsupported public key: {err}") from err
    return cast(PublicKey, public_key)
