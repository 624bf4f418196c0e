"""The chart's injector wiring and its RBAC against the testbed (issue 11 §2).

- The chart's own MutatingWebhookConfiguration (``clientConfig.service``, no caBundle) and
  Service; Sentry as the chart's ``dapr-sentry`` and the injector as the chart's
  ``dapr-injector``, each under exactly the chart's RBAC: the injector gets its certificate from
  Sentry, sets the caBundle, and the API server's call to it is verified against it.
- An app's ServiceAccount reads its own ``--config`` Configuration with the chart's
  ``dapr-configuration-reader`` and nothing more: no Secrets, no list.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pysentry.kube.client import KubeApiError, KubeClient
from pysentry.sidecar.kubernetes import load_kubernetes_configuration
from tests.k8s.cluster import create_pod, service_account_token, write_kubeconfig
from tests.k8s.helm import CHART_DIR, Helm, session_helm
from tests.k8s.injector import ca_bundle_of, containers, route_service, sentry_injector, wait_active
from tests.k8s.sentry import KubeLauncher
from tests.k8s.test_trust_bundle import configmap_ca, wait_for
from tests.k8s.testbed import Testbed

SELECT_NS = r"dapr_sidecar_injector.namespaceSelector.matchLabels.kubernetes\.io/metadata\.name="


@pytest.fixture
def helm(kube: Testbed, dapr_crds: None, tmp_path: Path) -> Helm:
    built = session_helm(tmp_path / "helm-home")
    return Helm(built.binary, built.home, kube.kubeconfig)


@pytest.fixture
def release(helm: Helm, namespace: str) -> Iterator[str]:
    """Uninstalled afterwards even if the test failed (cluster-scoped names are Dapr's)."""
    yield "dapr"
    helm.run(["uninstall", "dapr", "--namespace", namespace, "--wait"], check=False)


def install(helm: Helm, release: str, namespace: str, *values: str, verb: str = "install") -> None:
    helm.run([verb, release, str(CHART_DIR), "--namespace", namespace, *values])


def test_chart_webhook_with_a_sentry_certificate_under_the_charts_rbac(
    kube: Testbed,
    helm: Helm,
    namespace: str,
    release: str,
    kube_sentry: KubeLauncher,
    tmp_path: Path,
) -> None:
    # failurePolicy stays Ignore (the chart's default): the injector's own Pod is created while
    # nothing serves the webhook yet; a Pod gets daprd only through a verified call
    install(helm, release, namespace, "--set", SELECT_NS + namespace)
    assert ca_bundle_of(kube, "dapr-sidecar-injector") is None
    sentry = kube_sentry(namespace)  # as the chart's dapr-sentry
    wait_for(lambda: bool(configmap_ca(kube, namespace)))
    anchors = configmap_ca(kube, namespace)
    assert anchors is not None
    token = service_account_token(kube, namespace, "dapr-injector")
    kubeconfig = write_kubeconfig(kube, tmp_path / "injector-kubeconfig", token)
    injector = sentry_injector(
        kube, namespace, tmp_path / "injector", sentry.port, anchors=anchors, kubeconfig=kubeconfig
    )
    route_service(kube, namespace, injector.port, service=False)  # the chart's Service
    try:
        injector.start()  # the chart's name: dapr-sidecar-injector
        assert ca_bundle_of(kube, "dapr-sidecar-injector") == anchors.encode()
        wait_active(kube, namespace)
        pod = create_pod(kube, namespace, "web-1", "web", {"dapr.io/enabled": "true"})
    finally:
        injector.stop()
    daprd = containers(pod)["daprd"]
    env = {e["name"]: e.get("value") for e in daprd["env"]}
    assert env["DAPR_TRUST_ANCHORS"] == anchors
    assert "--enable-mtls" in daprd["args"]  # daprsystem read under the chart's Role
    log = injector.log()
    assert (
        f"Serving certificate from Sentry: spiffe://cluster.local/ns/{namespace}/dapr-injector"
        in log
    )
    assert "forbidden" not in log.lower()


def _sa_kubeconfig(kube: Testbed, namespace: str, sa: str, path: Path) -> str:
    status, out = kube.request(
        "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": sa}}
    )
    assert status in (201, 409), out
    return str(write_kubeconfig(kube, path, service_account_token(kube, namespace, sa)))


def _config(kube: Testbed, namespace: str, name: str) -> None:
    kube.must(
        "POST",
        f"/apis/dapr.io/v1alpha1/namespaces/{namespace}/configurations",
        {"apiVersion": "dapr.io/v1alpha1", "kind": "Configuration",
         "metadata": {"name": name}, "spec": {}},
    )  # fmt: skip


def _status(kubeconfig: str, path: str) -> int:
    async def go() -> int:
        async with await KubeClient.connect(kubeconfig) as client:
            try:
                await client.get(path)
            except KubeApiError as err:
                return err.status
            return 200

    return asyncio.run(go())


def _reads_config(kubeconfig: str, namespace: str, name: str) -> bool:
    """daprd's own code path for ``--config <name>`` in Kubernetes mode."""
    try:
        asyncio.run(load_kubernetes_configuration(name, namespace, env={"KUBECONFIG": kubeconfig}))
    except Exception as err:
        assert "the API server refused to read it" in str(err), err
        return False
    return True


def test_app_service_accounts_get_their_configuration_and_nothing_else(
    kube: Testbed, helm: Helm, namespace: str, release: str, tmp_path: Path
) -> None:
    apps, other = (f"t-{uuid.uuid4().hex[:10]}" for _ in range(2))
    for ns in (apps, other):
        kube.must("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        _config(kube, ns, "appconfig")
    kube.must("POST", f"/api/v1/namespaces/{apps}/secrets", {"metadata": {"name": "db"}})
    app = _sa_kubeconfig(kube, apps, "app", tmp_path / "app")
    stranger = _sa_kubeconfig(kube, other, "app", tmp_path / "other")
    assert not _reads_config(app, apps, "appconfig")  # nothing before the chart

    install(helm, release, namespace)  # default: every ServiceAccount may get Configurations
    wait_for(lambda: _reads_config(app, apps, "appconfig"), timeout=10)  # RBAC caches follow
    assert _reads_config(stranger, other, "appconfig")
    forbidden = {
        f"/api/v1/namespaces/{namespace}/secrets/dapr-trust-bundle": 403,  # the issuer key
        f"/api/v1/namespaces/{apps}/secrets/db": 403,
        f"/api/v1/namespaces/{apps}/secrets": 403,
        f"/apis/dapr.io/v1alpha1/namespaces/{apps}/configurations": 403,  # get only, no list
    }
    assert {path: _status(app, path) for path in forbidden} == forbidden

    # a list of namespaces: only their own ServiceAccounts, only there
    install(helm, release, namespace, "--set",
            f"dapr_sidecar_injector.configurationReader.namespaces={{{apps}}}",
            verb="upgrade")  # fmt: skip
    wait_for(lambda: not _reads_config(stranger, other, "appconfig"), timeout=10)
    assert _reads_config(app, apps, "appconfig")
    assert not _reads_config(app, other, "appconfig")
    assert not _reads_config(app, namespace, "daprsystem")
