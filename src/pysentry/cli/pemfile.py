"""Strict reads of the PEM files the ``mtls`` commands take in, each error naming its file.

Go's ``encoding/pem`` (and ``pysentry.pki.pem.decode_pem``) skips a block it cannot decode, so a
truncated or damaged ``ca.crt`` reads as a shorter bundle. A command that rewrites a file from
what it read would then drop the damaged root for good. Here every ``-----BEGIN`` must start a
complete, decodable block, every ``CERTIFICATE`` must parse, and any failure is a
:class:`CliError` ``<label>: <why>; <fix>``, raised before anything is written.

``label`` names the file as the user knows it: ``ca.crt '/home/me/.dapr/certs/ca.crt'`` or
``--ca-root-certificate 'root.pem'``.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from pysentry.cli.console import CliError
from pysentry.errors import InvalidKey
from pysentry.pki.keys import PrivateKey, load_private_key
from pysentry.pki.pem import decode_pem

_BEGIN = re.compile(rb"-----BEGIN ([^\r\n-]*)-----")
_MAX_BYTES = 1 << 20  # credentials are a few KiB; anything larger is not one of ours
REPAIR = "restore the file from a backup or remove the damaged block, then run the command again"


def label_of(path: Path, name: str | None = None) -> str:
    """``ca.crt '/abs/ca.crt'`` for a file in the credentials directory, else ``'/abs/x.pem'``."""
    return f"{name} {str(path)!r}" if name else repr(str(path))


def read_regular(path: Path, label: str) -> bytes:
    """The bytes of a regular file; a FIFO, device or directory is refused without blocking."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        raise CliError(f"{label}: file does not exist; check the path") from None
    except PermissionError:
        raise CliError(
            f"{label}: permission denied; run the command as the user that owns the file "
            "(the one Sentry runs as) or make it readable to you"
        ) from None
    except OSError as err:
        if err.errno == errno.EISDIR:
            raise CliError(f"{label}: is a directory, expected a PEM file") from None
        raise CliError(f"{label}: cannot read: {err.strerror}") from err
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file (FIFO or device)"
            raise CliError(f"{label}: is {kind}, expected a PEM file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(_MAX_BYTES + 1)
    except OSError as err:
        raise CliError(f"{label}: cannot read: {err.strerror}") from err
    finally:
        os.close(fd)
    if len(data) > _MAX_BYTES:
        raise CliError(f"{label}: larger than {_MAX_BYTES} bytes, not a PEM credentials file")
    return data


@dataclass(frozen=True, slots=True)
class Block:
    type: str
    der: bytes


@dataclass(frozen=True, slots=True)
class Scan:
    blocks: tuple[Block, ...]
    stray_text: bool  # something other than whitespace outside the blocks (comments, -text dumps)


def scan(data: bytes, label: str) -> Scan:
    """Every PEM block of ``data``; a block without its END line or with bad base64 is an error."""
    blocks: list[Block] = []
    outside: list[bytes] = []
    pos = 0
    while (begin := _BEGIN.search(data, pos)) is not None:
        outside.append(data[pos : begin.start()])
        index = len(blocks) + 1
        type_ = begin.group(1).decode("ascii", errors="replace")
        end_marker = b"-----END " + begin.group(1) + b"-----"
        end = data.find(end_marker, begin.end())
        following = _BEGIN.search(data, begin.end())
        if end < 0 or (following is not None and following.start() < end):
            raise CliError(
                f"{label}: PEM block #{index} ({type_!r}) has no END line: the file is truncated "
                f"or the block is damaged; {REPAIR}"
            )
        stop = end + len(end_marker)
        decoded = decode_pem(data[begin.start() : stop])
        if len(decoded) != 1:
            raise CliError(
                f"{label}: PEM block #{index} ({type_!r}) is damaged (its body is not valid "
                f"base64); {REPAIR}"
            )
        blocks.append(Block(decoded[0].type, decoded[0].der))
        pos = stop
    outside.append(data[pos:])
    rest = b"".join(outside)
    if b"-----BEGIN" in rest:
        raise CliError(f"{label}: a PEM BEGIN line is cut short: the file is damaged; {REPAIR}")
    if b"-----END " in rest:
        raise CliError(f"{label}: a PEM END line has no BEGIN line: the file is damaged; {REPAIR}")
    return Scan(tuple(blocks), stray_text=bool(rest.strip()))


def certificates(
    data: bytes, label: str, *, only_certificates: bool = False
) -> tuple[x509.Certificate, ...]:
    """Every certificate of ``data`` (at least one). ``only_certificates`` refuses other blocks,
    for a file the command rewrites from the certificates alone."""
    if not data.strip():
        raise CliError(f"{label}: the file is empty, expected PEM 'CERTIFICATE' blocks")
    certs = []
    for index, block in enumerate(scan(data, label).blocks, start=1):
        if block.type != "CERTIFICATE":
            if only_certificates:
                raise CliError(
                    f"{label}: PEM block #{index} is a {block.type!r}, not a 'CERTIFICATE'; this "
                    "file must hold only certificates: move that block to another file, then run "
                    "the command again"
                )
            continue
        try:
            certs.append(x509.load_der_x509_certificate(block.der))
        except ValueError as err:
            raise CliError(
                f"{label}: PEM block #{index} is not a valid certificate ({err}); {REPAIR}"
            ) from err
    if not certs:
        raise CliError(f"{label}: no PEM 'CERTIFICATE' block found")
    return tuple(certs)


def private_key(data: bytes, label: str) -> PrivateKey:
    """The key of ``data``, checked for truncation first (a cut key has no END line)."""
    scan(data, label)
    try:
        return load_private_key(data)
    except InvalidKey as err:
        raise CliError(f"{label}: {err}") from err
