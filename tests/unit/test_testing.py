"""pysentry.testing.TestCA: issues SVIDs that verify and credentials that load."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pysentry.pki.bundle import CaBundle
from pysentry.pki.keys import KeyAlgorithm, generate_key, same_public_key
from pysentry.pki.pem import load_certificates
from pysentry.pki.svid import verify_svid
from pysentry.spiffe import SpiffeId
from pysentry.testing import TestCA

NOW = datetime(2026, 6, 1, tzinfo=UTC)
APP = SpiffeId.parse("spiffe://public/ns/default/app")


@pytest.mark.parametrize("algorithm", [KeyAlgorithm.EC_P256, KeyAlgorithm.ED25519], ids=str)
def test_issue_svid_verifies(algorithm: KeyAlgorithm) -> None:
    ca = TestCA.create("public", algorithm=algorithm, now=NOW)
    chain, key = ca.issue_svid(APP, now=NOW, ttl=timedelta(minutes=5))
    assert chain[1:] == (ca.cert,)
    assert same_public_key(chain[0].public_key(), key.public_key())
    assert chain[0].not_valid_after_utc == NOW + timedelta(minutes=5)
    assert verify_svid(chain, [ca.root_cert], now=NOW) == APP


def test_issue_svid_with_given_key_and_string_id() -> None:
    ca = TestCA.create(now=NOW)
    key = generate_key(KeyAlgorithm.ED25519)
    chain, got = ca.issue_svid(str(APP), now=NOW, key=key)
    assert got is key
    assert verify_svid(chain, [ca.root_cert], now=NOW) == APP


def test_child_ca_chains_to_same_root() -> None:
    ca = TestCA.create(now=NOW)
    child = ca.child_ca(now=NOW)
    assert child.root_cert == ca.root_cert
    assert child.chain == (child.cert, ca.cert)
    chain, _ = child.issue_svid(APP, now=NOW)
    assert verify_svid(chain, [ca.root_cert], now=NOW) == APP
    assert child.bundle.issuer_chain == child.chain


def test_default_time_is_now() -> None:
    ca = TestCA.create()
    chain, _ = ca.issue_svid(APP)
    assert verify_svid(chain, [ca.root_cert], now=datetime.now(UTC)) == APP


def test_write_credentials_load_as_sentry_would(tmp_path: Path) -> None:
    ca = TestCA.create("cluster.local", now=NOW)
    ca.write_credentials(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["ca.crt", "issuer.crt", "issuer.key"]
    assert all(stat.S_IMODE((tmp_path / n).stat().st_mode) == 0o600 for n in names)
    bundle = CaBundle.from_pem(
        (tmp_path / "ca.crt").read_bytes(),
        (tmp_path / "issuer.crt").read_bytes(),
        (tmp_path / "issuer.key").read_bytes(),
        now=NOW,
    )
    assert bundle.trust_anchors == (ca.root_cert,)
    assert load_certificates(ca.anchors_pem()) == (ca.root_cert,)


def test_not_collected_by_pytest() -> None:
    assert TestCA.__test__ is False
