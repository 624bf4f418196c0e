"""X509Svid: ID from the leaf, key match, renewal time at 50% of the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pysentry.errors import PeerRejected
from pysentry.pki.keys import generate_key, load_private_key
from pysentry.pki.pem import load_certificates
from pysentry.security.identity import X509Svid
from pysentry.spiffe import SpiffeId
from pysentry.testing import TestCA

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
ID = SpiffeId.parse("spiffe://public/ns/default/app")


def test_from_chain_reads_the_id_and_renewal_is_half_the_backdated_window() -> None:
    ca = TestCA.create("public", now=NOW)
    chain, key = ca.issue_svid(ID, ttl=timedelta(hours=24), now=NOW)
    svid = X509Svid.from_chain(chain, key)
    assert svid.spiffe_id == ID
    assert svid.leaf is chain[0]
    assert svid.not_before == NOW - timedelta(minutes=15)
    assert svid.not_after == NOW + timedelta(hours=24)
    # Dapr's example: 24h TTL + 15m skew renews about 11h52m30s after issuance.
    assert svid.renewal_at() - NOW == timedelta(hours=11, minutes=52, seconds=30)
    assert not svid.expired(NOW)
    assert svid.expired(svid.not_after + timedelta(seconds=1))


def test_pem_round_trip_and_key_not_in_repr() -> None:
    ca = TestCA.create("public", now=NOW)
    chain, key = ca.issue_svid(ID, now=NOW)
    svid = X509Svid.from_chain(chain, key)
    assert load_certificates(svid.chain_pem()) == chain
    assert svid.key_pem().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert load_private_key(svid.key_pem()).public_key() == key.public_key()
    assert "PRIVATE" not in repr(svid) and "private_key" not in repr(svid)
    assert svid.serial == f"{chain[0].serial_number:X}"


def test_key_must_match_the_leaf() -> None:
    ca = TestCA.create("public", now=NOW)
    chain, _ = ca.issue_svid(ID, now=NOW)
    with pytest.raises(ValueError, match="private key does not match the leaf"):
        X509Svid.from_chain(chain, generate_key())


def test_empty_chain() -> None:
    with pytest.raises(PeerRejected, match="empty certificates chain"):
        X509Svid.from_chain((), generate_key())
