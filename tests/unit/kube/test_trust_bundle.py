"""The trust-bundle snapshot's states and messages, and Sentry's RBAC list (no I/O)."""

from __future__ import annotations

import base64
from typing import cast

import pytest

from pysentry.clock import system_clock
from pysentry.credentials.base import IncompleteCredentials, StoreState
from pysentry.credentials.kube import KubeTrustBundle, TrustBundleSnapshot
from pysentry.errors import InvalidBundle
from pysentry.kube.client import KubeClient
from pysentry.sentry.kubernetes import required_permissions
from pysentry.testing import TestCA

NAMES = ("ca.crt", "issuer.crt", "issuer.key")


def store() -> KubeTrustBundle:
    return KubeTrustBundle(cast(KubeClient, None), "dapr-system")


def snapshot(items: dict[str, bytes]) -> TrustBundleSnapshot:
    data = {k: base64.b64encode(v).decode() for k, v in items.items()}
    secret = {"metadata": {"resourceVersion": "7"}, "data": data}
    return TrustBundleSnapshot(secret, {"data": {}}, store()._decode(secret), NAMES)


def test_states_none_partial_complete() -> None:
    ca = TestCA.create("cluster.local")
    full = {
        "ca.crt": ca.anchors_pem(),
        "issuer.crt": ca.bundle.issuer_chain_pem(),
        "issuer.key": ca.bundle.issuer_key_pem(),
    }
    assert snapshot({}).state is StoreState.NONE
    assert snapshot({"ca.crt": full["ca.crt"]}).state is StoreState.PARTIAL
    complete = snapshot(full)
    assert complete.state is StoreState.COMPLETE
    assert complete.secret_version == "7"
    assert store().validate(complete, now=system_clock()).anchors_pem() == ca.anchors_pem()


def test_a_partial_secret_names_present_and_missing_keys_and_the_fix() -> None:
    with pytest.raises(IncompleteCredentials) as caught:
        store().validate(snapshot({"ca.crt": b"x"}), now=system_clock())
    text = str(caught.value)
    assert (
        "Secret dapr-system/dapr-trust-bundle has 'ca.crt' but no 'issuer.crt', 'issuer.key'"
        in text
    )
    assert "remove all of them to let Sentry generate" in text


def test_an_invalid_secret_names_the_keys_without_their_content() -> None:
    ca, other = TestCA.create("cluster.local"), TestCA.create("cluster.local")
    items = {
        "ca.crt": other.anchors_pem(),
        "issuer.crt": ca.bundle.issuer_chain_pem(),
        "issuer.key": ca.bundle.issuer_key_pem(),
    }
    with pytest.raises(InvalidBundle) as caught:
        store().validate(snapshot(items), now=system_clock())
    text = str(caught.value)
    assert text.startswith("failed to verify CA bundle in Secret dapr-system/dapr-trust-bundle")
    assert "BEGIN" not in text


def test_required_permissions_are_the_charts() -> None:
    texts = [str(p) for p in required_permissions("dapr-system", "dapr-trust-bundle")]
    assert "get secrets 'dapr-trust-bundle' in namespace 'dapr-system'" in texts
    assert "create tokenreviews.authentication.k8s.io (all namespaces)" in texts
    assert "watch pods (all namespaces)" in texts
