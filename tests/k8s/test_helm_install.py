"""``helm install / upgrade / uninstall`` of ``charts/pysentry`` against the testbed (issue 11 §1).

Pods never run here, so Sentry runs as a local process with a token of the chart's
``dapr-sentry`` ServiceAccount: it works only if the chart's RBAC is enough. The chart's webhook
points at a closed port on 127.0.0.1 (``webhookURL``) and only at the test's namespace, so the API
server never dials a Service, and no other test's Pods are sent to it.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pysentry.pki.pem import load_certificates
from tests.k8s.cluster import create_pod, service_account_token, write_kubeconfig
from tests.k8s.helm import CHART_DIR, Helm, session_helm
from tests.k8s.injector import InjectorProcess, containers, wait_active
from tests.k8s.pki import write_pki
from tests.k8s.sentry import KubeLauncher
from tests.k8s.testbed import Testbed, free_port

BUNDLE = "dapr-trust-bundle"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
CRD = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/configurations.dapr.io"


def namespaced_paths(ns: str) -> dict[str, str]:
    return {
        "Secret": f"/api/v1/namespaces/{ns}/secrets/{BUNDLE}",
        "ConfigMap": f"/api/v1/namespaces/{ns}/configmaps/{BUNDLE}",
        "Configuration": f"/apis/dapr.io/v1alpha1/namespaces/{ns}/configurations/daprsystem",
        "Deployment sentry": f"/apis/apps/v1/namespaces/{ns}/deployments/dapr-sentry",
        "Deployment injector": f"/apis/apps/v1/namespaces/{ns}/deployments/dapr-sidecar-injector",
        "Service sentry": f"/api/v1/namespaces/{ns}/services/dapr-sentry",
        "ServiceAccount": f"/api/v1/namespaces/{ns}/serviceaccounts/dapr-sentry",
        "Role": f"{RBAC}/namespaces/{ns}/roles/dapr-sentry",
        "RoleBinding": f"{RBAC}/namespaces/{ns}/rolebindings/dapr-sentry",
        "ClusterRole": f"{RBAC}/clusterroles/dapr-sentry",
        "ClusterRoleBinding": f"{RBAC}/clusterrolebindings/dapr-sentry",
        "MutatingWebhookConfiguration": f"{WEBHOOKS}/dapr-sidecar-injector",
    }


def webhook_values(namespace: str) -> list[str]:
    closed = free_port()  # nothing listens: with failurePolicy Ignore, Pods are admitted as-is
    return [
        "--set",
        f"dapr_sidecar_injector.webhookURL=https://127.0.0.1:{closed}/mutate",
        "--set",
        "dapr_sidecar_injector.namespaceSelector.matchLabels."
        rf"kubernetes\.io/metadata\.name={namespace}",
    ]


@pytest.fixture
def helm(kube: Testbed, dapr_crds: None, tmp_path: Path) -> Helm:
    built = session_helm(tmp_path / "helm-home")
    return Helm(built.binary, built.home, kube.kubeconfig)


@pytest.fixture
def release(helm: Helm, namespace: str) -> Iterator[str]:
    """Uninstalls ``dapr`` from ``namespace`` afterwards even if the test failed (the
    cluster-scoped objects have Dapr's fixed names, so a leftover would block the next install)."""
    yield "dapr"
    helm.run(["uninstall", "dapr", "--namespace", namespace, "--wait"], check=False)


def wait_ca_bundle(kube: Testbed, ca_pem: bytes, timeout: float = 10.0) -> None:
    want = base64.b64encode(ca_pem).decode()
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        webhook = kube.must("GET", f"{WEBHOOKS}/dapr-sidecar-injector")["webhooks"][0]
        got = webhook["clientConfig"].get("caBundle")
        if got == want:
            return
        time.sleep(0.05)
    raise AssertionError(f"caBundle not updated within {timeout}s (has {got is not None})")


def secret_data(kube: Testbed, namespace: str) -> dict[str, bytes]:
    secret = kube.must("GET", f"/api/v1/namespaces/{namespace}/secrets/{BUNDLE}")
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def test_install_sentry_under_chart_rbac_upgrade_keeps_bundle_uninstall_removes(
    kube: Testbed, helm: Helm, namespace: str, release: str, kube_sentry: KubeLauncher
) -> None:
    helm.run(
        ["install", release, str(CHART_DIR), "--namespace", namespace, *webhook_values(namespace)]
    )
    paths = namespaced_paths(namespace)
    missing = [what for what, path in paths.items() if kube.request("GET", path)[0] != 200]
    assert missing == []
    assert secret_data(kube, namespace) == {}

    # Sentry as the chart's ServiceAccount, under exactly the chart's RBAC: fills the bundle.
    sentry = kube_sentry(namespace)
    data = secret_data(kube, namespace)
    assert sorted(data) == ["ca.crt", "issuer.crt", "issuer.key"]
    cm = kube.must("GET", paths["ConfigMap"])
    assert cm["data"]["ca.crt"].encode() == data["ca.crt"]
    assert len(load_certificates(data["ca.crt"])) == 1
    sentry.stop()

    # helm upgrade changes daprsystem and leaves the Secret data Sentry wrote in place.
    helm.run(
        [
            "upgrade",
            release,
            str(CHART_DIR),
            "--namespace",
            namespace,
            *webhook_values(namespace),
            "--set",
            "global.mtls.workloadCertTTL=1h,global.ha.enabled=true",
        ]
    )
    assert kube.must("GET", paths["Configuration"])["spec"]["mtls"]["workloadCertTTL"] == "1h"
    assert kube.must("GET", paths["Deployment sentry"])["spec"]["replicas"] == 3
    assert secret_data(kube, namespace) == data

    helm.run(["uninstall", release, "--namespace", namespace, "--wait"])
    left = [what for what, path in paths.items() if kube.request("GET", path)[0] != 404]
    assert left == []
    # Helm never deletes what crds/ installed (Dapr's chart has the same rule).
    assert kube.request("GET", CRD)[0] == 200


def test_install_with_own_certificates_and_sentry_loads_them(
    kube: Testbed,
    helm: Helm,
    namespace: str,
    release: str,
    kube_sentry: KubeLauncher,
    tmp_path: Path,
) -> None:
    from tests.integration.openssl import openssl_recipe

    openssl_recipe(tmp_path)
    helm.run(
        [
            "install",
            release,
            str(CHART_DIR),
            "--namespace",
            namespace,
            *webhook_values(namespace),
            "--set-file",
            f"dapr_sentry.tls.issuer.certPEM={tmp_path / 'issuer.crt'}",
            "--set-file",
            f"dapr_sentry.tls.issuer.keyPEM={tmp_path / 'issuer.key'}",
            "--set-file",
            f"dapr_sentry.tls.root.certPEM={tmp_path / 'ca.crt'}",
        ]
    )
    expected = {
        "ca.crt": (tmp_path / "ca.crt").read_bytes(),
        "issuer.crt": (tmp_path / "issuer.crt").read_bytes(),
        "issuer.key": (tmp_path / "issuer.key").read_bytes(),
    }
    assert secret_data(kube, namespace) == expected
    sentry = kube_sentry(namespace)
    assert sentry.anchors_pem() == expected["ca.crt"]  # loaded, not re-rooted
    assert secret_data(kube, namespace) == expected


def test_chart_webhook_calls_the_injector_under_the_charts_rbac(
    kube: Testbed,
    helm: Helm,
    namespace: str,
    release: str,
    kube_sentry: KubeLauncher,
    tmp_path: Path,
) -> None:
    """The chart's own MutatingWebhookConfiguration (URL on 127.0.0.1, no caBundle), Sentry and
    the injector each as the chart's ServiceAccount: the injector sets the caBundle (and follows
    a change of its CA file), and an annotated Pod gets the trust anchors Sentry wrote."""
    injector = InjectorProcess(kube, namespace, tmp_path / "injector")
    (tmp_path / "injector").mkdir(exist_ok=True)
    helm.run(
        [
            "install",
            release,
            str(CHART_DIR),
            "--namespace",
            namespace,
            "--set",
            f"dapr_sidecar_injector.webhookURL={injector.url}",
            "--set",
            "dapr_sidecar_injector.webhookFailurePolicy=Fail",
            "--set",
            "dapr_sidecar_injector.namespaceSelector.matchLabels."
            rf"kubernetes\.io/metadata\.name={namespace}",
        ]
    )
    kube_sentry(namespace)
    anchors = secret_data(kube, namespace)["ca.crt"]
    ca_file = tmp_path / "webhook-ca.crt"
    ca_file.write_bytes((injector.pki / "ca.crt").read_bytes())
    token = service_account_token(kube, namespace, "dapr-injector")
    injector.kubeconfig = write_kubeconfig(kube, tmp_path / "injector-kubeconfig", token)
    try:
        injector.start("--webhook-ca-file", str(ca_file))
        wait_active(kube, namespace)
        pod = create_pod(kube, namespace, "web-1", "web", {"dapr.io/enabled": "true"})
        write_pki(tmp_path / "other-pki")
        new_ca = (tmp_path / "other-pki" / "ca.crt").read_bytes()
        ca_file.write_bytes(new_ca)
        wait_ca_bundle(kube, new_ca)
    finally:
        injector.stop()
    env = {e["name"]: e.get("value") for e in containers(pod)["daprd"]["env"]}
    assert env["DAPR_TRUST_ANCHORS"] == anchors.decode()
    assert "forbidden" not in injector.log().lower()
