"""The testbed itself: a real API server on loopback, reachable through our client."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pysentry.errors import ConfigError
from pysentry.kube.client import KubeApiError, KubeClient
from pysentry.kube.config import load_kube_configuration
from tests.k8s.build import KUBERNETES_VERSION
from tests.k8s.cluster import service_account_token
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


async def test_in_cluster_and_kubeconfig_env_connections(
    kube: Testbed, namespace: str, tmp_path: Path
) -> None:
    """The in-cluster service-account config (host/port env, token and CA files) and KUBECONFIG
    both reach the API server; a missing token file names the fix."""
    sa_dir = tmp_path / "serviceaccount"
    sa_dir.mkdir()
    kube.must(
        "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": "probe"}}
    )
    (sa_dir / "token").write_text(service_account_token(kube, namespace, "probe"))
    (sa_dir / "ca.crt").write_bytes(kube.ca_pem)
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(kube.port)}
    source = await load_kube_configuration(None, env=env, service_account_dir=sa_dir)
    assert source.source.startswith("in-cluster service account")
    async with KubeClient(source) as client:
        assert (await client.get("/version"))["gitVersion"] == KUBERNETES_VERSION
        with pytest.raises(KubeApiError) as caught:  # runs as the service account, not anonymous
            await client.get(f"/api/v1/namespaces/{namespace}/pods")
        assert caught.value.forbidden
        assert f'User "system:serviceaccount:{namespace}:probe" cannot list' in str(caught.value)

    via_env = await load_kube_configuration(None, env={"KUBECONFIG": str(kube.kubeconfig), **env})
    assert via_env.source.startswith(f"kubeconfig {str(kube.kubeconfig)!r}")
    (sa_dir / "token").unlink()
    with pytest.raises(ConfigError, match=r"in-cluster Kubernetes config: .*pass --kubeconfig"):
        await load_kube_configuration(None, env=env, service_account_dir=sa_dir)
