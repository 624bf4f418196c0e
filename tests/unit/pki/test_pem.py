"""pysentry.pki.pem: Go-like PEM decoding, certificate loading and chain encoding."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pysentry.errors import InvalidBundle
from pysentry.pki.pem import (
    decode_pem,
    dump_certificates,
    encode_chain,
    encode_pem,
    is_self_signed,
    load_certificates,
)
from pysentry.testing import TestCA

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA.create("public", now=NOW)


def test_encode_decode_round_trip() -> None:
    der = bytes(range(200))
    pem = encode_pem("THING", der)
    assert all(len(line) <= 64 for line in pem.splitlines())
    (block,) = decode_pem(pem)
    assert (block.type, block.der, block.headers) == ("THING", der, ())


def test_decode_reads_rfc1421_headers() -> None:
    pem = b"-----BEGIN X-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES\n\nAAAA\n-----END X-----\n"
    (block,) = decode_pem(pem)
    assert block.header("proc-type") == "4,ENCRYPTED"
    assert block.header("DEK-Info") == "AES"
    assert block.header("missing") is None


def test_decode_skips_malformed_blocks_and_text() -> None:
    pem = b"junk\n-----BEGIN A-----\n!!!\n-----END A-----\n" + encode_pem("B", b"ok") + b"tail"
    assert [b.type for b in decode_pem(pem)] == ["B"]


def test_load_certificates_skips_other_blocks(ca: TestCA) -> None:
    pem = b"# comment\n" + encode_pem("PRIVATE KEY", b"x") + dump_certificates([ca.root_cert])
    assert load_certificates(pem) == (ca.root_cert,)
    assert load_certificates(b"") == ()


def test_load_certificates_rejects_bad_der() -> None:
    with pytest.raises(InvalidBundle, match=r"^failed to parse certificate #1: "):
        load_certificates(encode_pem("CERTIFICATE", b"\x30\x00"))


def test_self_signed_and_chain_encoding(ca: TestCA) -> None:
    chain, _ = ca.issue_svid("spiffe://public/ns/default/app", now=NOW)
    assert is_self_signed(ca.root_cert)
    assert not is_self_signed(ca.cert)
    assert not is_self_signed(chain[0])
    assert load_certificates(encode_chain((*chain, ca.root_cert))) == chain
