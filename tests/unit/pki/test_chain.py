"""pysentry.pki.chain: the Go-semantics path builder under bundle and SVID verification."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from pysentry.pki.chain import ChainError, check_signature_from, verify_chain
from pysentry.pki.keys import KeyAlgorithm, generate_key
from tests.unit.pki.factory import NOW, make_cert


@pytest.mark.parametrize("algorithm", list(KeyAlgorithm), ids=str)
def test_three_level_chain(algorithm: KeyAlgorithm) -> None:
    rk, ik, lk = generate_key(algorithm), generate_key(algorithm), generate_key(algorithm)
    root = make_cert("root", rk, pathlen=1)
    inter = make_cert("inter", ik, (root, rk), pathlen=0)
    leaf = make_cert("leaf", lk, (inter, ik), ca=False, cert_sign=False)
    assert verify_chain(leaf, [inter], [root], now=NOW) == (leaf, inter, root)


def test_path_length_constraint() -> None:
    rk, ik, jk, lk = (generate_key() for _ in range(4))
    root = make_cert("root", rk, pathlen=0)
    inter = make_cert("inter", ik, (root, rk))
    leaf = make_cert("leaf", lk, (inter, ik), ca=False, cert_sign=False)
    with pytest.raises(ChainError, match=r"too many intermediates for path length constraint"):
        verify_chain(leaf, [inter], [root], now=NOW)
    root1 = make_cert("root", rk, pathlen=1)
    inter0 = make_cert("inter", ik, (root1, rk), pathlen=0)
    inter2 = make_cert("inter2", jk, (inter0, ik))
    leaf2 = make_cert("leaf", lk, (inter2, jk), ca=False, cert_sign=False)
    with pytest.raises(ChainError, match=r"too many intermediates"):
        verify_chain(leaf2, [inter0, inter2], [root1], now=NOW)


def test_leaf_that_is_an_anchor() -> None:
    rk = generate_key()
    root = make_cert("root", rk)
    assert verify_chain(root, [], [root], now=NOW) == (root,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ca": None}, r"not a CA: basicConstraints CA:true is missing"),
        ({"ca": False}, r"not a CA"),
        ({"cert_sign": False}, r"keyUsage lacks keyCertSign"),
    ],
    ids=["v3-without-basic-constraints", "ca-false", "no-cert-sign"],
)
def test_parent_must_be_allowed_to_sign(kwargs: dict[str, object], message: str) -> None:
    pk, ck = generate_key(), generate_key()
    parent = make_cert("parent", pk, **kwargs)  # type: ignore[arg-type]
    child = make_cert("child", ck, (parent, pk), ca=False, cert_sign=False)
    with pytest.raises(ChainError, match=message):
        check_signature_from(child, parent)


def test_server_auth_eku_required_only_when_asked() -> None:
    rk, lk = generate_key(), generate_key()
    root = make_cert("root", rk, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,))
    leaf = make_cert("leaf", lk, (root, rk), ca=False, cert_sign=False)
    assert verify_chain(leaf, [], [root], now=NOW)
    with pytest.raises(ChainError, match="incompatible key usage"):
        verify_chain(leaf, [], [root], now=NOW, require_server_auth=True)


def test_validity_bounds_are_inclusive() -> None:
    rk = generate_key()
    root = make_cert("root", rk, not_before=NOW, not_after=NOW + timedelta(hours=1))
    assert verify_chain(root, [], [root], now=NOW)
    assert verify_chain(root, [], [root], now=NOW + timedelta(hours=1))
    with pytest.raises(ChainError, match="is after"):
        verify_chain(root, [], [root], now=NOW + timedelta(hours=1, seconds=1))


def test_naive_now_is_refused() -> None:
    rk = generate_key()
    root = make_cert("root", rk)
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_chain(root, [], [root], now=datetime(2026, 1, 1))


def test_name_match_but_wrong_key_is_not_a_parent() -> None:
    rk, fk, lk = generate_key(), generate_key(), generate_key()
    real = make_cert("root", rk)
    fake = make_cert("root", fk)
    leaf = make_cert("leaf", lk, (real, rk), ca=False, cert_sign=False)
    assert verify_chain(leaf, [], [fake, real], now=NOW) == (leaf, real)
    with pytest.raises(ChainError, match="signature verification failure"):
        verify_chain(leaf, [], [fake], now=NOW)
    assert isinstance(leaf, x509.Certificate)
