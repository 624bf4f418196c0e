"""The testbed itself: a real API server on loopback, reachable through our client."""

from __future__ import annotations

import socket

from pysentry.kube.client import KubeClient
from tests.k8s.build import KUBERNETES_VERSION
from tests.k8s.testbed import Testbed


async def test_the_api_server_answers_through_the_kubeconfig(kube: Testbed, namespace: str) -> None:
    async with await KubeClient.connect(str(kube.kubeconfig)) as client:
        version = await client.get("/version")
        assert version["gitVersion"] == KUBERNETES_VERSION
        listing = await client.get("/api/v1/namespaces")
        assert namespace in {n["metadata"]["name"] for n in listing["items"]}
    assert client.connected is True


def test_it_listens_on_loopback_only_and_routes_aggregated_apis_locally(kube: Testbed) -> None:
    args = " ".join(str(a) for a in kube.procs[1].args)  # type: ignore[union-attr]
    assert "--bind-address 127.0.0.1" in args
    assert "--enable-aggregator-routing=true" in args
    with socket.create_connection(("127.0.0.1", kube.port), timeout=2):
        pass
