"""Helpers of ``tests/k8s/test_cli_renew.py``: one control plane per test (running ``dapr``
against it with :mod:`tests.k8s.clirun`), an admission policy that freezes the Secret, a
read-only ServiceAccount.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

from pysentry.testing import TestCA
from tests.k8s.clirun import Result, dapr_side_by_side, workload
from tests.k8s.cluster import BUNDLE, chart_objects, service_account_token, write_kubeconfig
from tests.k8s.test_trust_bundle import wait_for
from tests.k8s.testbed import Testbed

IMAGE = "ghcr.io/example/pysentry:1.16.0"


def secret_data(ca: TestCA) -> dict[str, bytes]:
    bundle = ca.bundle
    return {
        "ca.crt": bundle.anchors_pem(),
        "issuer.crt": bundle.issuer_chain_pem(),
        "issuer.key": bundle.issuer_key_pem(),
    }


class Plane:
    """A control plane in one namespace: the chart's objects; ``daprsystem`` removed at the end."""

    def __init__(self, bed: Testbed, tmp_path: Path) -> None:
        self.bed, self.tmp = bed, tmp_path
        self.ns = f"r-{uuid.uuid4().hex[:8]}"
        self.home = tmp_path / "home"
        self.home.mkdir()
        bed.must("POST", "/api/v1/namespaces", {"metadata": {"name": self.ns}})

    def install(self, bundle: dict[str, bytes] | None = None, *, workloads: bool = True) -> None:
        chart_objects(self.bed, self.ns, bundle=bundle, configmap_ca=(bundle or {}).get("ca.crt"))
        for kind in ("secrets", "configmaps"):  # as Helm labels them: the patch keeps them
            self.bed.must(
                "PATCH",
                f"{self.api}/{kind}/{BUNDLE}",
                {"metadata": {"labels": {"app.kubernetes.io/managed-by": "Helm"}}},
                content_type="application/merge-patch+json",
            )
        if workloads:
            for name in ("dapr-sentry", "dapr-sidecar-injector"):
                self.add_workload("deployments", name)

    def add_workload(self, kind: str, name: str) -> None:
        path = f"/apis/apps/v1/namespaces/{self.ns}/{kind}"
        self.bed.must("POST", path, workload(name, kind, IMAGE))

    @property
    def api(self) -> str:
        return f"/api/v1/namespaces/{self.ns}"

    def remove_system_config(self) -> None:
        path = f"/apis/dapr.io/v1alpha1/namespaces/{self.ns}/configurations/daprsystem"
        status, out = self.bed.request("DELETE", path)
        assert status in (200, 404), out

    def run(self, *args: str, kubeconfig: Path | None = None) -> Result:
        return self.run_all([args], kubeconfig=kubeconfig)[0]

    def run_all(self, calls: list[tuple[str, ...]], kubeconfig: Path | None = None) -> list[Result]:
        kc = kubeconfig or self.bed.kubeconfig
        return dapr_side_by_side(self.home, [(args, kc) for args in calls])

    def secret(self) -> dict[str, bytes]:
        out = self.bed.must("GET", f"{self.api}/secrets/{BUNDLE}")
        return {k: base64.b64decode(v) for k, v in (out.get("data") or {}).items()}

    def configmap_ca(self) -> bytes:
        out = self.bed.must("GET", f"{self.api}/configmaps/{BUNDLE}")
        return str((out.get("data") or {}).get("ca.crt", "")).encode()

    def versions(self) -> tuple[str, str]:
        """The resourceVersions of the Secret and the ConfigMap (any write changes one)."""
        secret, cm = (
            str(self.bed.must("GET", f"{self.api}/{kind}/{BUNDLE}")["metadata"]["resourceVersion"])
            for kind in ("secrets", "configmaps")
        )
        return secret, cm

    def labels(self, kind: str) -> dict[str, str]:
        out = self.bed.must("GET", f"{self.api}/{kind}/{BUNDLE}")
        return dict(out["metadata"].get("labels") or {})


def freeze_secret(plane: Plane) -> str:
    """A ValidatingAdmissionPolicy that refuses every update of the Secret (RBAC still allows
    it), so the second write fails after the first; returns the binding's path."""
    api = "/apis/admissionregistration.k8s.io/v1"
    name = f"freeze-{plane.ns}"
    plane.bed.must(
        "POST",
        f"{api}/validatingadmissionpolicies",
        {
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["UPDATE"],
                            "resources": ["secrets"],
                        }
                    ]
                },
                "validations": [
                    {"expression": f"object.metadata.name != '{BUNDLE}'", "message": "frozen"}
                ],
            },
        },
    )
    plane.bed.must(
        "POST",
        f"{api}/validatingadmissionpolicybindings",
        {
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": plane.ns}}
                },
            },
        },
    )
    probe = {"metadata": {"annotations": {"probe": "1"}}}
    path = f"{plane.api}/secrets/{BUNDLE}"

    def frozen() -> bool:
        status, _ = plane.bed.request(
            "PATCH", path, probe, content_type="application/merge-patch+json"
        )
        return status >= 400

    wait_for(frozen, timeout=20)
    return f"{api}/validatingadmissionpolicybindings/{name}"


def reader_kubeconfig(plane: Plane, tmp_path: Path) -> Path:
    """A ServiceAccount that may read everything the command reads and patch the ConfigMap,
    but not the Secret."""
    bed, ns = plane.bed, plane.ns
    bed.must("POST", f"{plane.api}/serviceaccounts", {"metadata": {"name": "reader"}})
    rules = [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "patch"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
        {"apiGroups": ["dapr.io"], "resources": ["configurations"], "verbs": ["list", "get"]},
    ]
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    name = f"reader-{ns}"
    bed.must("POST", f"{rbac}/clusterroles", {"metadata": {"name": name}, "rules": rules})
    bed.must(
        "POST",
        f"{rbac}/clusterrolebindings",
        {
            "metadata": {"name": name},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
        },
    )
    token = service_account_token(bed, ns, "reader")
    return write_kubeconfig(bed, tmp_path / "reader.kubeconfig", token)
