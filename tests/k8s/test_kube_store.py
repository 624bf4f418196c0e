"""The Secret as a CredentialStore (the seam the file store has), against the real API server."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest

from pysentry.clock import system_clock
from pysentry.credentials.base import (
    CredentialStore,
    CredentialsUnavailable,
    IncompleteCredentials,
    SaveFailed,
    StoreEvent,
    StoreState,
)
from pysentry.credentials.kube import KubeTrustBundle, TrustBundleSnapshot
from pysentry.credentials.kube_store import KubeSecretStore
from pysentry.kube.client import KubeClient
from pysentry.pki.bundle import CaBundle
from pysentry.pki.keys import KeyAlgorithm
from pysentry.sentry.ca import CaSettings
from pysentry.sentry.kubernetes import load_or_generate
from pysentry.spiffe import TrustDomain
from pysentry.testing import TestCA
from tests.k8s.cluster import BUNDLE, chart_objects
from tests.k8s.testbed import Testbed


async def test_state_save_load_version_and_changes(
    kube: Testbed, namespace: str, dapr_crds: None
) -> None:
    chart_objects(kube, namespace)
    async with await KubeClient.connect(str(kube.kubeconfig)) as client:
        store = KubeSecretStore(
            KubeTrustBundle(client, namespace),
            loop=asyncio.get_running_loop(),
            poll_interval=timedelta(milliseconds=100),
        )
        seam: CredentialStore = store  # the same Protocol as the file store
        assert seam.location == f"Secret {namespace}/{BUNDLE}"
        with pytest.raises(RuntimeError, match="off the event loop"):
            store.state()
        assert await asyncio.to_thread(store.state) is StoreState.NONE
        with pytest.raises(IncompleteCredentials):
            await asyncio.to_thread(store.load, now=system_clock())
        ca = TestCA.create("cluster.local", namespace=namespace)
        await asyncio.to_thread(store.save, ca.bundle)
        assert await asyncio.to_thread(store.state) is StoreState.COMPLETE
        loaded = await asyncio.to_thread(store.load, now=system_clock())
        assert loaded.bundle.anchors_pem() == ca.anchors_pem()
        assert loaded.version == await asyncio.to_thread(store.version)
        cm = kube.must("GET", f"/api/v1/namespaces/{namespace}/configmaps/{BUNDLE}")
        assert cm["data"]["ca.crt"] == ca.anchors_pem().decode()
        with pytest.raises(SaveFailed, match="refusing to overwrite"):
            await asyncio.to_thread(store.save, TestCA.create("cluster.local").bundle)

        changes = store.changes()
        assert await anext(changes) is StoreEvent.WATCHING
        secret = kube.must("GET", f"/api/v1/namespaces/{namespace}/secrets/{BUNDLE}")
        secret.setdefault("metadata", {}).setdefault("labels", {})["touched"] = "yes"
        kube.must("PUT", f"/api/v1/namespaces/{namespace}/secrets/{BUNDLE}", secret)
        async with asyncio.timeout(10):
            assert await anext(changes) is StoreEvent.CHANGED
        await changes.aclose()

        kube.must("DELETE", f"/api/v1/namespaces/{namespace}/secrets/{BUNDLE}")
        with pytest.raises(CredentialsUnavailable, match="not found"):
            await asyncio.to_thread(store.load, now=system_clock())


async def test_racing_generations_end_with_one_root(
    kube: Testbed, namespace: str, dapr_crds: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Start-ups that all read the empty Secret before any writes: one write wins, the others
    get 409 Conflict and load the winner's bundle."""
    chart_objects(kube, namespace)
    settings = CaSettings(trust_domain=TrustDomain("cluster.local"), namespace=namespace)
    async with await KubeClient.connect(str(kube.kubeconfig)) as client:
        stores = [KubeTrustBundle(client, namespace) for _ in range(2)]
        empty = await stores[0].read()
        assert await stores[0].save(TestCA.create("cluster.local").bundle, empty)
        assert not await stores[1].save(TestCA.create("cluster.local").bundle, empty)  # stale

        other = f"{namespace}-b"
        kube.must("POST", "/api/v1/namespaces", {"metadata": {"name": other}})
        chart_objects(kube, other)
        settings = CaSettings(trust_domain=TrustDomain("cluster.local"), namespace=other)
        first_saved = asyncio.Event()

        late_reads: list[TrustBundleSnapshot] = []
        both_late_read = asyncio.Event()

        class Winner(KubeTrustBundle):
            async def save(self, bundle: CaBundle, snapshot: TrustBundleSnapshot) -> bool:
                await both_late_read.wait()
                saved = await super().save(bundle, snapshot)
                first_saved.set()
                return saved

        class Late(KubeTrustBundle):  # read the empty Secret, then save after the winner
            async def read(self) -> TrustBundleSnapshot:
                snapshot = await super().read()
                late_reads.append(snapshot)
                if len(late_reads) == 2:
                    both_late_read.set()
                return snapshot

            async def save(self, bundle: CaBundle, snapshot: TrustBundleSnapshot) -> bool:
                await first_saved.wait()
                return await super().save(bundle, snapshot)

        racers = [Winner(client, other), Late(client, other), Late(client, other)]
        with caplog.at_level(logging.INFO, logger="pysentry.sentry"):
            results = await asyncio.gather(
                *(load_or_generate(r, settings, KeyAlgorithm.EC_P256) for r in racers)
            )
    roots = {bundle.anchors_pem() for bundle, _ in results}
    assert len(roots) == 1
    written = kube.must("GET", f"/api/v1/namespaces/{other}/configmaps/{BUNDLE}")
    assert written["data"]["ca.crt"].encode() in roots
    assert caplog.text.count("persisted successfully") == 1
    assert caplog.text.count("was written by another Sentry meanwhile") == 2, caplog.text
