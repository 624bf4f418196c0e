"""Damaged credentials for the CLI safety tests: two-root credentials and ways to break them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pysentry.pki.keys import dump_private_key, generate_key
from pysentry.pki.pem import encode_pem
from pysentry.testing import TestCA
from tests.integration.cli.conftest import Result

BEGIN = b"-----BEGIN CERTIFICATE-----"


def two_roots(certs: Path) -> TestCA:
    """Credentials whose ca.crt holds the issuer's root and a second, unrelated root."""
    certs.mkdir(parents=True, exist_ok=True)
    ca, other = TestCA.create("cluster.local"), TestCA.create("cluster.local")
    ca.write_credentials(certs)
    (certs / "ca.crt").write_bytes(ca.anchors_pem() + other.anchors_pem())
    return ca


def _second(data: bytes) -> int:
    return data.index(BEGIN, 1)


def bad_base64(data: bytes) -> bytes:
    at = _second(data) + len(BEGIN) + 20
    return data[:at] + b"!!!!" + data[at + 4 :]


CORRUPTIONS: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "bad-base64": (bad_base64, "PEM block #2 ('CERTIFICATE') is damaged (its body is not valid"),
    "bad-der": (
        lambda d: d[: _second(d)] + encode_pem("CERTIFICATE", b"\x30\x03\x02\x01\x00"),
        "PEM block #2 is not a valid certificate",
    ),
    "truncated": (
        lambda d: d[: _second(d) + (len(d) - _second(d)) // 2],
        "PEM block #2 ('CERTIFICATE') has no END line: the file is truncated",
    ),
    "cut-in-begin-line": (lambda d: d[: _second(d) + 15], "a PEM BEGIN line is cut short"),
    "stray-end-line": (
        lambda d: d + b"-----END CERTIFICATE-----\n",
        "a PEM END line has no BEGIN line",
    ),
    "empty": (lambda d: b"", "the file is empty"),
    "private-key-inside": (
        lambda d: d + dump_private_key(generate_key()),
        "PEM block #3 is a 'PRIVATE KEY', not a 'CERTIFICATE'",
    ),
}


def assert_refused(result: Result, message: str) -> None:
    assert result.returncode == 1, result.output
    assert result.stderr.startswith("error: "), result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert "successful" not in result.stdout
