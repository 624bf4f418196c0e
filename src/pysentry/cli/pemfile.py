"""Strict reads of the PEM files the ``mtls`` commands take in, each error naming its file.

Go's ``encoding/pem`` (and ``pysentry.pki.pem.decode_pem``) skips a block it cannot decode, so a
truncated or damaged ``ca.crt`` reads as a shorter bundle. A command that rewrites a file from
what it read would then drop the damaged root for good. The strict reader of
:mod:`pysentry.pki.pem` (``scan_pem``, ``strict_certificates``) requires every ``-----BEGIN`` to
start a complete, decodable block and every ``CERTIFICATE`` to parse; here any failure becomes a
:class:`CliError` ``<label>: <why>; <fix>``, raised before anything is written. This module adds
the file part: FIFOs, devices and directories are refused without blocking.

``label`` names the file as the user knows it: ``ca.crt '/home/me/.dapr/certs/ca.crt'`` or
``--ca-root-certificate 'root.pem'``.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from cryptography import x509

from pysentry.cli.console import CliError
from pysentry.errors import InvalidKey
from pysentry.pki.keys import PrivateKey, load_private_key
from pysentry.pki.pem import PemError, PemProblem, PemScan, scan_pem, strict_certificates

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


def _cli_error(err: PemError, label: str) -> CliError:
    if err.kind is PemProblem.DAMAGED:
        return CliError(f"{label}: {err.problem}; {REPAIR}")
    if err.kind is PemProblem.NOT_A_CERTIFICATE:
        return CliError(
            f"{label}: {err.problem}; this file must hold only certificates: move that block to "
            "another file, then run the command again"
        )
    return CliError(f"{label}: {err.problem}")


def scan(data: bytes, label: str) -> PemScan:
    """Every PEM block of ``data``; a block without its END line or with bad base64 is an error."""
    try:
        return scan_pem(data, "file")
    except PemError as err:
        raise _cli_error(err, label) from None


def certificates(
    data: bytes, label: str, *, only_certificates: bool = False
) -> tuple[x509.Certificate, ...]:
    """Every certificate of ``data`` (at least one). ``only_certificates`` refuses other blocks,
    for a file the command rewrites from the certificates alone."""
    try:
        return strict_certificates(data, "file", only_certificates=only_certificates)
    except PemError as err:
        raise _cli_error(err, label) from None


def private_key(data: bytes, label: str) -> PrivateKey:
    """The key of ``data``, checked for truncation first (a cut key has no END line)."""
    scan(data, label)
    try:
        return load_private_key(data)
    except InvalidKey as err:
        raise CliError(f"{label}: {err}") from err
