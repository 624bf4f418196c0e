"""pysentry.pki.pem strict reading: every kind of damage is a PemError naming the block and fix.

Go's decoder (and ``decode_pem``) skips a block it cannot decode, so a cut ``ca.crt`` reads as a
shorter bundle; ``scan_pem`` / ``strict_certificates`` refuse it instead.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from pysentry.errors import InvalidBundle
from pysentry.pki.keys import dump_private_key, generate_key
from pysentry.pki.pem import (
    REPAIR,
    PemError,
    PemProblem,
    decode_pem,
    encode_pem,
    load_certificates,
    scan_pem,
    strict_certificates,
)
from pysentry.testing import TestCA

NOW = datetime(2026, 1, 1, tzinfo=UTC)
BEGIN = b"-----BEGIN CERTIFICATE-----"


@pytest.fixture(scope="module")
def two_roots() -> tuple[bytes, TestCA, TestCA]:
    a, b = TestCA.create("public", now=NOW), TestCA.create("public", now=NOW)
    return a.anchors_pem() + b.anchors_pem(), a, b


def _second(data: bytes) -> int:
    return data.index(BEGIN, 1)


def _bad_base64(data: bytes) -> bytes:
    at = _second(data) + len(BEGIN) + 20
    return data[:at] + b"!!!!" + data[at + 4 :]


DAMAGE: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "missing-end": (
        lambda d: d[: _second(d) + (len(d) - _second(d)) // 2],
        r"^PEM block #2 \('CERTIFICATE'\) has no END line: the file is truncated or the block "
        r"is damaged; ",
    ),
    "end-after-next-begin": (  # block 1 lost its END line; block 2 is whole
        lambda d: d.replace(b"-----END CERTIFICATE-----\n", b"", 1),
        r"^PEM block #1 \('CERTIFICATE'\) has no END line",
    ),
    "bad-base64": (
        _bad_base64,
        r"^PEM block #2 \('CERTIFICATE'\) is damaged \(its body is not valid base64\); ",
    ),
    "bad-der": (
        lambda d: d[: _second(d)] + encode_pem("CERTIFICATE", b"\x30\x03\x02\x01\x00"),
        r"^PEM block #2 is not a valid certificate \(.+\); ",
    ),
    "truncated-begin-line": (
        lambda d: d[: _second(d) + 15],
        r"^a PEM BEGIN line is cut short: the file is damaged; ",
    ),
    "text-after-begin-dashes": (  # newlines lost, e.g. by a shell or YAML
        lambda d: d[: _second(d)] + d[_second(d) :].replace(b"\n", b" "),
        r"^PEM block #2 \('CERTIFICATE'\) is damaged \(text follows the dashes of its BEGIN",
    ),
    "stray-end": (
        lambda d: d + b"-----END CERTIFICATE-----\n",
        r"^a PEM END line has no BEGIN line: the file is damaged; ",
    ),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damage_is_refused_with_block_and_fix(
    two_roots: tuple[bytes, TestCA, TestCA], damage: str
) -> None:
    make, message = DAMAGE[damage]
    data = make(two_roots[0])
    with pytest.raises(PemError, match=message) as info:
        strict_certificates(data, "file")
    assert info.value.kind is PemProblem.DAMAGED
    assert str(info.value).endswith("; " + REPAIR)
    assert isinstance(info.value, InvalidBundle)  # callers that catch InvalidBundle see it
    assert b"MII" not in str(info.value).encode()  # never a PEM body in a message


def test_lenient_decoder_would_have_dropped_the_cut_root(
    two_roots: tuple[bytes, TestCA, TestCA],
) -> None:
    """The defect class: Go-like decoding of a cut second root gives one root, no error."""
    data, a, _ = two_roots
    cut = DAMAGE["missing-end"][0](data)
    assert load_certificates(cut) == (a.root_cert,)
    with pytest.raises(PemError):
        strict_certificates(cut)


def test_whole_bundle_with_comments_is_read(two_roots: tuple[bytes, TestCA, TestCA]) -> None:
    data, a, b = two_roots
    commented = b"# roots\n" + data.replace(BEGIN, b"subject=CN=x\n" + BEGIN) + b"trailer\n"
    assert strict_certificates(commented) == (a.root_cert, b.root_cert)
    scan = scan_pem(commented)
    assert scan.stray_text
    assert [blk.type for blk in scan.blocks] == ["CERTIFICATE", "CERTIFICATE"]
    assert not scan_pem(data).stray_text
    crlf = data.replace(b"\n", b"\r\n")
    assert strict_certificates(crlf) == (a.root_cert, b.root_cert)


def test_empty_and_no_certificate() -> None:
    for empty in (b"", b" \n\t\n"):
        with pytest.raises(PemError, match=r"^the value is empty, expected PEM 'CERTIFICATE'"):
            strict_certificates(empty, "value")
    with pytest.raises(PemError, match=r"^no PEM 'CERTIFICATE' block found; ") as info:
        strict_certificates(b"just some text\n")
    assert info.value.kind is PemProblem.NO_CERTIFICATE
    assert scan_pem(b"").blocks == ()


@pytest.mark.parametrize("only", [False, True])
def test_key_block_where_a_certificate_is_expected(
    two_roots: tuple[bytes, TestCA, TestCA], only: bool
) -> None:
    data = two_roots[0] + dump_private_key(generate_key())
    with pytest.raises(
        PemError, match=r"^PEM block #3 is a 'PRIVATE KEY', not a 'CERTIFICATE'; this file must"
    ) as info:
        strict_certificates(data, "file", only_certificates=only)
    assert info.value.kind is PemProblem.NOT_A_CERTIFICATE
    assert "move that block to another file" in info.value.fix


def test_other_well_formed_blocks_skipped_unless_only_certificates(
    two_roots: tuple[bytes, TestCA, TestCA],
) -> None:
    data, a, b = two_roots
    mixed = encode_pem("X509 CRL", b"crl") + data
    assert strict_certificates(mixed) == (a.root_cert, b.root_cert)  # as Dapr's kit
    with pytest.raises(PemError, match=r"^PEM block #1 is a 'X509 CRL', not a 'CERTIFICATE'"):
        strict_certificates(mixed, only_certificates=True)


def test_scan_keeps_headers_and_ec_parameters() -> None:
    """Blocks the key loader needs (EC PARAMETERS before the key, RFC 1421 headers) pass."""
    pem = (
        encode_pem("EC PARAMETERS", b"\x06\x08*\x86H\xce=\x03\x01\x07")
        + b"-----BEGIN X-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES\n\nAAAA\n-----END X-----\n"
    )
    blocks = scan_pem(pem).blocks
    assert [blk.type for blk in blocks] == ["EC PARAMETERS", "X"]
    assert blocks[1].header("Proc-Type") == "4,ENCRYPTED"
    assert blocks == decode_pem(pem)  # same blocks as the lenient decoder when nothing is damaged


def test_damaged_key_block_is_refused() -> None:
    key = dump_private_key(generate_key())
    with pytest.raises(PemError, match=r"^PEM block #1 \('PRIVATE KEY'\) has no END line"):
        scan_pem(key[: len(key) // 2])
