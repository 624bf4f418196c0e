"""Drop-in check (issue 11 §1): Dapr's **real** chart (v1.16.0, from its Go module), then pysentry's
Sentry as that chart's ``dapr-sentry`` ServiceAccount. It must work under Dapr's RBAC and fill
Dapr's empty trust bundle.

Nothing is dialled: Dapr's injector (a webhook on a Service) is disabled, and ``--skip-crds``
leaves out Dapr's CRDs (the Subscription CRD names a conversion-webhook Service); the session's
``dapr_crds`` fixture has installed the one Sentry needs, Dapr's own ``configurations.dapr.io``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from pysentry.pki.pem import load_certificates
from tests.k8s.build import dapr_chart_dir
from tests.k8s.helm import Helm, session_helm
from tests.k8s.sentry import KubeLauncher
from tests.k8s.testbed import Testbed

BUNDLE = "dapr-trust-bundle"


@pytest.fixture
def helm(kube: Testbed, dapr_crds: None, tmp_path: Path) -> Helm:
    built = session_helm(tmp_path / "helm-home")
    return Helm(built.binary, built.home, kube.kubeconfig)


@pytest.fixture
def dapr_release(helm: Helm, namespace: str) -> Iterator[str]:
    helm.run(
        [
            "install",
            "dapr",
            str(dapr_chart_dir()),
            "--namespace",
            namespace,
            "--skip-crds",
            "--set",
            "dapr_sidecar_injector.enabled=false",
        ]
    )
    yield "dapr"
    helm.run(["uninstall", "dapr", "--namespace", namespace, "--wait"], check=False)


def test_our_sentry_under_daprs_real_chart_fills_its_empty_bundle(
    kube: Testbed, namespace: str, dapr_release: str, kube_sentry: KubeLauncher
) -> None:
    secret_path = f"/api/v1/namespaces/{namespace}/secrets/{BUNDLE}"
    assert "data" not in kube.must("GET", secret_path)  # Dapr's chart: empty
    role = kube.must(
        "GET", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles/dapr-sentry"
    )
    assert role["metadata"]["labels"].get("app.kubernetes.io/managed-by") == "Helm"

    kube_sentry(namespace)  # as Dapr's dapr-sentry ServiceAccount, Dapr's Role/ClusterRole
    data = {k: base64.b64decode(v) for k, v in kube.must("GET", secret_path)["data"].items()}
    assert sorted(data) == ["ca.crt", "issuer.crt", "issuer.key"]
    assert len(load_certificates(data["ca.crt"])) == 1
    cm = kube.must("GET", f"/api/v1/namespaces/{namespace}/configmaps/{BUNDLE}")
    assert cm["data"]["ca.crt"].encode() == data["ca.crt"]
