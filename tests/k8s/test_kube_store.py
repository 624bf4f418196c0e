"""The Secret as a CredentialStore (the seam the file store has), against the real API server."""

from __future__ import annotations

import asyncio
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
from pysentry.credentials.kube import KubeTrustBundle
from pysentry.credentials.kube_store import KubeSecretStore
from pysentry.kube.client import KubeClient
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
