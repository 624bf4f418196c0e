"""PEM decoding and encoding with Go's ``encoding/pem`` semantics, plus certificate helpers.

Two readers:

- lenient, as Go: ``decode_pem(data)`` returns every well-formed block (type, RFC 1421 headers,
  DER bytes) and silently skips one it cannot decode; ``load_certificates(pem)`` keeps only
  ``CERTIFICATE`` blocks, as Dapr's kit ``DecodePEMCertificates`` does. Used for data pysentry
  made itself or received on the wire, where Dapr's behaviour is the contract.
- strict, for credentials people hand us (``ca.crt``, ``issuer.crt``, ``issuer.key``, trust
  anchors): ``scan_pem(data)`` requires every ``-----BEGIN`` to start a complete, decodable block
  and ``strict_certificates(data)`` requires every certificate to parse, so a cut or corrupt
  bundle is a :class:`PemError` naming the block, never a shorter bundle. Text outside blocks
  (comments, ``openssl x509 -text`` dumps) is allowed.

``encode_chain(certs)`` skips self-signed certificates so a root is never served in a chain.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding

from pysentry.errors import InvalidBundle

_BLOCK = re.compile(
    rb"-----BEGIN ([^\r\n-]*)-----\r?\n(.*?)-----END \1-----",
    re.DOTALL,
)
_BEGIN = re.compile(rb"-----BEGIN ([^\r\n-]*)-----")
_NEWLINE = re.compile(rb"\r?\n")
REPAIR = "restore it from a backup or from where it was copied, or remove the damaged block"


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


class PemProblem(StrEnum):
    """What is wrong with a strictly read PEM input."""

    DAMAGED = "damaged"  # a block is cut, corrupt, or an END/BEGIN line is broken
    EMPTY = "empty"
    NO_CERTIFICATE = "no-certificate"
    NOT_A_CERTIFICATE = "not-a-certificate"  # e.g. a key block among certificates


class PemError(InvalidBundle):
    """Strict PEM reading failed. ``problem`` says what is wrong (naming the block by number),
    ``fix`` how to repair it, ``kind`` which case it is; ``str(err)`` is ``<problem>; <fix>``.
    Callers put the source first (``ca.crt: ...``) and may give their own fix for ``kind``."""

    def __init__(self, kind: PemProblem, problem: str, fix: str) -> None:
        self.kind, self.problem, self.fix = kind, problem, fix
        super().__init__(f"{problem}; {fix}")


@dataclass(frozen=True, slots=True)
class PemScan:
    """Every block of a strictly read input; ``stray_text``: text outside the blocks."""

    blocks: tuple[PemBlock, ...]
    stray_text: bool


def _damaged(problem: str) -> PemError:
    return PemError(PemProblem.DAMAGED, problem, REPAIR)


def scan_pem(data: bytes, what: str = "input") -> PemScan:
    """Every PEM block of ``data``, or :class:`PemError` (``DAMAGED``) for the first broken one.

    Refused: a block without its END line (cut, or another BEGIN comes first), text after a
    BEGIN line's dashes, a body that is not base64, a BEGIN line cut short, an END line without
    its BEGIN. ``what`` names the input in messages ("file", "value").
    """
    blocks: list[PemBlock] = []
    outside: list[bytes] = []
    pos = 0
    while (begin := _BEGIN.search(data, pos)) is not None:
        outside.append(data[pos : begin.start()])
        type_ = begin.group(1).decode("ascii", errors="replace")
        name = f"PEM block #{len(blocks) + 1} ({type_!r})"
        end_marker = b"-----END " + begin.group(1) + b"-----"
        end = data.find(end_marker, begin.end())
        following = _BEGIN.search(data, begin.end())
        if end < 0 or (following is not None and following.start() < end):
            raise _damaged(
                f"{name} has no END line: the {what} is truncated or the block is damaged"
            )
        newline = _NEWLINE.match(data, begin.end())
        if newline is None:
            raise _damaged(f"{name} is damaged (text follows the dashes of its BEGIN line)")
        block = _decode_block(type_, data[newline.end() : end])
        if block is None:
            raise _damaged(f"{name} is damaged (its body is not valid base64)")
        blocks.append(block)
        pos = end + len(end_marker)
    outside.append(data[pos:])
    rest = b"".join(outside)
    if b"-----BEGIN" in rest:
        raise _damaged(f"a PEM BEGIN line is cut short: the {what} is damaged")
    if b"-----END " in rest:
        raise _damaged(f"a PEM END line has no BEGIN line: the {what} is damaged")
    return PemScan(tuple(blocks), stray_text=bool(rest.strip()))


def strict_certificates(
    data: bytes, what: str = "input", *, only_certificates: bool = False
) -> tuple[x509.Certificate, ...]:
    """Every certificate of ``data`` (at least one), read with :func:`scan_pem`.

    Each ``CERTIFICATE`` block must parse. Other well-formed blocks are skipped, as Dapr's
    ``DecodePEMCertificates`` does, except a private key (certificate files are shared, so a key
    there is a mistake to report, not to ignore); ``only_certificates`` refuses every block.
    Raises :class:`PemError`.
    """
    if not data.strip():
        raise PemError(
            PemProblem.EMPTY,
            f"the {what} is empty, expected PEM 'CERTIFICATE' blocks",
            "put the certificate(s) in it as PEM",
        )
    certs = []
    for number, block in enumerate(scan_pem(data, what).blocks, start=1):
        if block.type != "CERTIFICATE":
            is_key = block.type.endswith("PRIVATE KEY")
            if not (is_key or only_certificates):
                continue
            fix = f"this {what} must hold only certificates: move that block to another file"
            if is_key:
                fix += " (a key must not be shipped with the certificates)"
            raise PemError(
                PemProblem.NOT_A_CERTIFICATE,
                f"PEM block #{number} is a {block.type!r}, not a 'CERTIFICATE'",
                fix,
            )
        try:
            certs.append(x509.load_der_x509_certificate(block.der))
        except ValueError as err:
            raise _damaged(f"PEM block #{number} is not a valid certificate ({err})") from err
    if not certs:
        raise PemError(
            PemProblem.NO_CERTIFICATE,
            "no PEM 'CERTIFICATE' block found",
            "put the certificate(s) in it as PEM",
        )
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
