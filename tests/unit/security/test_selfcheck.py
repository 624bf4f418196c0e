"""``sidecars_accept``: a CA bundle passes only when daprd's own TLS path accepts its SVIDs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pysentry.errors import PeerRejected
from pysentry.pki.keys import generate_key
from pysentry.security.selfcheck import sidecars_accept
from pysentry.testing import TestCA
from tests.unit.pki.factory import make_cert

# The handshake runs on OpenSSL's own clock, so "now" must be the real time when each test runs
# (a module-level value goes stale in a long suite: the throwaway leaves live 5 minutes).
BEFORE = datetime.now(UTC) - timedelta(days=1)
AFTER = datetime.now(UTC) + timedelta(days=30)


def _now() -> datetime:
    return datetime.now(UTC)


def test_a_generated_bundle_passes() -> None:
    ca = TestCA.create("localhost")
    sidecars_accept((ca.root_cert,), ca.chain, ca.key, now=_now())


def test_the_step_recipe_shape_passes() -> None:
    root_key, issuer_key = generate_key(), generate_key()
    root = make_cert("cluster.local", root_key, pathlen=1, not_before=BEFORE, not_after=AFTER)
    issuer = make_cert(
        "cluster.local", issuer_key, (root, root_key), pathlen=0, not_before=BEFORE, not_after=AFTER
    )
    sidecars_accept((root,), (issuer,), issuer_key, now=_now())


def test_an_issuer_under_another_root_fails() -> None:
    ca, other = TestCA.create("localhost"), TestCA.create("localhost")
    with pytest.raises(PeerRejected, match="TLS handshake refused: "):
        sidecars_accept((other.root_cert,), ca.chain, ca.key, now=_now())


def test_an_expired_issuer_fails() -> None:
    root_key, issuer_key = generate_key(), generate_key()
    root = make_cert("r", root_key, not_before=BEFORE, not_after=AFTER)
    issuer = make_cert(
        "i", issuer_key, (root, root_key), not_before=BEFORE, not_after=_now() - timedelta(hours=1)
    )
    with pytest.raises(PeerRejected, match="issuer certificate is not valid now"):
        sidecars_accept((root,), (issuer,), issuer_key, now=_now())
