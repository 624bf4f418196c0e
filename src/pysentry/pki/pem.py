"""PEM decoding and encoding with Go's ``encoding/pem`` semantics, plus certificate helpers.

``decode_pem(data)`` returns every well-formed block (type, RFC 1421 headers, DER bytes).
``load_certificates(pem)`` keeps only ``CERTIFICATE`` blocks, as Dapr's kit
``DecodePEMCertificates`` does. ``encode_chain(certs)`` skips self-signed certificates so a root is
never served in a chain.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding

from pysentry.errors import InvalidBundle

_BLOCK = re.compile(
    rb"-----BEGIN ([^\r\n-]*)-----\r?\n(.*?)-----END \1-----",
    re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class PemBlock:
    """One decoded PEM block; ``headers`` are RFC 1421 pairs such as ``Proc-Type``."""

    type: str
    headers: tuple[tuple[str, str], ...]
    der: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def _decode_block(type_: str, body: bytes) -> PemBlock | None:
    lines = body.decode("ascii", errors="replace").splitlines()
    headers: list[tuple[str, str]] = []
    rest = lines
    if lines and ":" in lines[0]:
        idx = 0
        while idx < len(lines) and ":" in lines[idx]:
            key, _, value = lines[idx].partition(":")
            headers.append((key.strip(), value.strip()))
            idx += 1
        rest = lines[idx:]
    payload = "".join(line.strip() for line in rest)
    try:
        der = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None
    return PemBlock(type_, tuple(headers), der)


def decode_pem(data: bytes) -> tuple[PemBlock, ...]:
    """Every well-formed PEM block in ``data``, in order; malformed blocks are skipped (as Go)."""
    blocks = []
    for match in _BLOCK.finditer(data):
        block = _decode_block(match.group(1).decode("ascii", errors="replace"), match.group(2))
        if block is not None:
            blocks.append(block)
    return tuple(blocks)


def encode_pem(type_: str, der: bytes) -> bytes:
    """One PEM block with 64-column base64 lines, like Go's ``pem.EncodeToMemory``."""
    b64 = base64.b64encode(der).decode("ascii")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    body = "".join(line + "\n" for line in lines)
    return f"-----BEGIN {type_}-----\n{body}-----END {type_}-----\n".encode("ascii")


def load_certificates(pem: bytes) -> tuple[x509.Certificate, ...]:
    """Parse every ``CERTIFICATE`` block (other block types are skipped).

    Raises :class:`InvalidBundle` if a ``CERTIFICATE`` block does not hold a valid certificate.
    An input without certificates returns ``()``; callers decide whether that is an error.
    """
    certs = []
    for index, block in enumerate(b for b in decode_pem(pem) if b.type == "CERTIFICATE"):
        try:
            certs.append(x509.load_der_x509_certificate(block.der))
        except ValueError as err:
            raise InvalidBundle(f"failed to parse certificate #{index + 1}: {err}") from err
    return tuple(certs)


def dump_certificates(certs: Iterable[x509.Certificate]) -> bytes:
    """Concatenated ``CERTIFICATE`` PEM blocks (comments and other blocks are gone)."""
    return b"".join(cert.public_bytes(Encoding.PEM) for cert in certs)


def is_self_signed(cert: x509.Certificate) -> bool:
    """True if the certificate's issuer is its own subject and its own key verifies it."""
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def encode_chain(certs: Iterable[x509.Certificate]) -> bytes:
    """PEM of the chain with self-signed certificates skipped (Dapr's ``EncodeX509Chain`` use)."""
    return dump_certificates(cert for cert in certs if not is_self_signed(cert))
