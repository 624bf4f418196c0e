"""What Dapr's chart puts into a cluster, for the tests: CRD, Secret/ConfigMap, RBAC, Sentry's SA.

The Role and ClusterRole are the rules of Dapr v1.16's ``dapr_rbac/templates/sentry.yaml``
(``rbac.namespaced`` false). Each test's namespace is its control-plane namespace, so the
cluster-scoped objects get the namespace in their names.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.k8s.build import dapr_chart_dir
from tests.k8s.testbed import Testbed

SENTRY_SA = "dapr-sentry"
BUNDLE = "dapr-trust-bundle"
Rule = dict[str, Any]

SENTRY_ROLE_RULES: list[Rule] = [
    {
        "apiGroups": [""],
        "resources": ["secrets"],
        "verbs": ["get", "update", "delete"],
        "resourceNames": [BUNDLE],
    },
    {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "verbs": ["get", "update", "watch", "list"],
        "resourceNames": [BUNDLE],
    },
    {"apiGroups": ["dapr.io"], "resources": ["configurations"], "verbs": ["list", "get", "watch"]},
]
SENTRY_CLUSTER_ROLE_RULES: list[Rule] = [
    {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
    {"apiGroups": ["dapr.io"], "resources": ["configurations"], "verbs": ["list", "get", "watch"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "get", "watch"]},
]


def apply_dapr_crds(kube: Testbed) -> None:
    """Dapr's ``configurations.dapr.io`` CRD from its v1.16.0 chart; wait until established."""
    crd = yaml.safe_load((dapr_chart_dir() / "crds" / "configuration.yaml").read_text())
    status, out = kube.request(
        "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd
    )
    if status not in (201, 409):
        raise AssertionError(f"creating the Configuration CRD: HTTP {status}: {out!r}")
    deadline = time.monotonic() + 30
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/configurations.dapr.io"
    while time.monotonic() < deadline:
        conditions = (kube.must("GET", path).get("status") or {}).get("conditions") or []
        if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            status, _ = kube.request("GET", "/apis/dapr.io/v1alpha1/configurations")
            if status == 200:
                return
        time.sleep(0.1)
    raise AssertionError("the Configuration CRD was not established within 30s")


def chart_objects(
    kube: Testbed,
    namespace: str,
    *,
    bundle: dict[str, bytes] | None = None,
    configmap_ca: bytes | None = None,
) -> None:
    """The empty (or pre-filled) Secret and ConfigMap and ``Configuration daprsystem``."""
    data = {k: base64.b64encode(v).decode() for k, v in (bundle or {}).items()}
    kube.must(
        "POST",
        f"/api/v1/namespaces/{namespace}/secrets",
        {"metadata": {"name": BUNDLE}, "type": "Opaque", **({"data": data} if data else {})},
    )
    cm_data = {"ca.crt": configmap_ca.decode()} if configmap_ca is not None else {}
    kube.must(
        "POST",
        f"/api/v1/namespaces/{namespace}/configmaps",
        {"metadata": {"name": BUNDLE}, **({"data": cm_data} if cm_data else {})},
    )
    kube.must(
        "POST",
        f"/apis/dapr.io/v1alpha1/namespaces/{namespace}/configurations",
        {
            "apiVersion": "dapr.io/v1alpha1",
            "kind": "Configuration",
            "metadata": {"name": "daprsystem"},
            "spec": {
                "mtls": {
                    "enabled": True,
                    "workloadCertTTL": "24h",
                    "allowedClockSkew": "15m",
                    "controlPlaneTrustDomain": "cluster.local",
                    "sentryAddress": f"dapr-sentry.{namespace}.svc.cluster.local:443",
                }
            },
        },
    )


def sentry_rbac(kube: Testbed, namespace: str, *, drop: tuple[str, str] | None = None) -> None:
    """ServiceAccount ``dapr-sentry`` with the chart's rules; ``drop=(resource, verb)`` removes
    one verb from every rule that grants it."""

    def rules(source: Sequence[Rule]) -> list[Rule]:
        out = []
        for rule in source:
            rule = json.loads(json.dumps(rule))
            if drop is not None and drop[0] in rule["resources"]:
                rule["verbs"] = [v for v in rule["verbs"] if v != drop[1]]
            if rule["verbs"]:  # a rule left with no verb is dropped (RBAC refuses it)
                out.append(rule)
        return out

    name = f"dapr-sentry-{namespace}"
    kube.must(
        "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": SENTRY_SA}}
    )
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    subject = [{"kind": "ServiceAccount", "name": SENTRY_SA, "namespace": namespace}]
    kube.must(
        "POST",
        f"{rbac}/namespaces/{namespace}/roles",
        {"metadata": {"name": SENTRY_SA}, "rules": rules(SENTRY_ROLE_RULES)},
    )
    kube.must(
        "POST",
        f"{rbac}/namespaces/{namespace}/rolebindings",
        {
            "metadata": {"name": SENTRY_SA},
            "subjects": subject,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": SENTRY_SA},
        },
    )
    kube.must(
        "POST",
        f"{rbac}/clusterroles",
        {"metadata": {"name": name}, "rules": rules(SENTRY_CLUSTER_ROLE_RULES)},
    )
    kube.must(
        "POST",
        f"{rbac}/clusterrolebindings",
        {
            "metadata": {"name": name},
            "subjects": subject,
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
        },
    )


def service_account_token(
    kube: Testbed,
    namespace: str,
    sa: str,
    *,
    audiences: Sequence[str] = (),
    pod: str | None = None,
    seconds: int = 3600,
) -> str:
    """A TokenRequest for ``sa``, optionally bound to Pod ``pod`` (as ``kubectl create token``)."""
    spec: dict[str, Any] = {"expirationSeconds": seconds}
    if audiences:
        spec["audiences"] = list(audiences)
    if pod is not None:
        spec["boundObjectRef"] = {"kind": "Pod", "apiVersion": "v1", "name": pod}
    out = kube.must(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{sa}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
    )
    return str(out["status"]["token"])


def write_kubeconfig(kube: Testbed, path: Path, token: str) -> Path:
    """A kubeconfig for ``token`` (e.g. the ``dapr-sentry`` ServiceAccount's)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "sa",
        "clusters": [
            {
                "name": "testbed",
                "cluster": {
                    "server": kube.url,
                    "certificate-authority-data": base64.b64encode(kube.ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "testbed", "user": "sa"}}],
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


def create_pod(
    kube: Testbed, namespace: str, name: str, sa: str, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    """A Pod that stays Pending (no kubelet); with its own ServiceAccount ``sa``."""
    status, out = kube.request(
        "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": sa}}
    )
    if status not in (201, 409):
        raise AssertionError(f"creating ServiceAccount {sa}: HTTP {status}: {out!r}")
    return dict(
        kube.must(
            "POST",
            f"/api/v1/namespaces/{namespace}/pods",
            {
                "metadata": {"name": name, "annotations": annotations or {}},
                "spec": {
                    "serviceAccountName": sa,
                    "containers": [{"name": "app", "image": "example.invalid/app:1"}],
                },
            },
        )
    )


def sentry_id(namespace: str, trust_domain: str = "cluster.local") -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/dapr-sentry"


def pod_token(
    kube: Testbed,
    namespace: str,
    pod: str,
    sa: str,
    control_plane: str,
    *,
    audience: str | None = None,
) -> str:
    """A token bound to Pod ``pod`` with the Sentry ID audience (what the injector mounts)."""
    return service_account_token(
        kube, namespace, sa, pod=pod, seconds=3600, audiences=[audience or sentry_id(control_plane)]
    )
