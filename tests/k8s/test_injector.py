"""The sidecar injector as a real webhook: the testbed's API server calls it on 127.0.0.1
(``clientConfig.url``) while Pods are created, and stores the mutated spec (issue 11 §2).

Each test registers its own MutatingWebhookConfiguration, limited to its namespace, so no other
test's Pods go to it; the injector runs as a local process with the admin kubeconfig.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.k8s.cluster import (
    chart_objects,
    create_pod,
    sentry_id,
    service_account_token,
    write_kubeconfig,
)
from tests.k8s.injector import ANCHORS, IMAGE, WEBHOOKS, InjectorProcess, containers, register
from tests.k8s.testbed import Testbed


@pytest.fixture
def injector(
    kube: Testbed, dapr_crds: None, namespace: str, tmp_path: Path
) -> Iterator[InjectorProcess]:
    chart_objects(kube, namespace, configmap_ca=ANCHORS)
    proc = InjectorProcess(kube, namespace, tmp_path)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        kube.request("DELETE", f"{WEBHOOKS}/pysentry-injector-{namespace}")


def flag(args: list[str], name: str) -> str:
    assert name in args, f"{name} not in {args}"
    return args[args.index(name) + 1]


def test_annotated_pod_gets_daprd_and_plain_pod_is_unchanged(
    kube: Testbed, namespace: str, injector: InjectorProcess
) -> None:
    register(kube, injector, "Fail")
    annotations = {
        "dapr.io/enabled": "true",
        "dapr.io/app-id": "orders",
        "dapr.io/app-port": "8080",
        "dapr.io/config": "appconfig",
    }
    created = create_pod(kube, namespace, "orders-1", "orders", annotations)
    stored = kube.must("GET", f"/api/v1/namespaces/{namespace}/pods/orders-1")
    assert stored["spec"] == created["spec"]
    by_name = containers(stored)
    assert sorted(by_name) == ["app", "daprd"]
    daprd = by_name["daprd"]
    assert daprd["image"] == IMAGE
    args = daprd["args"]
    assert flag(args, "--mode") == "kubernetes"
    assert flag(args, "--app-id") == "orders"
    assert flag(args, "--app-port") == "8080"
    assert flag(args, "--config") == "appconfig"
    assert flag(args, "--sentry-address") == f"dapr-sentry.{namespace}.svc.cluster.local:443"
    assert flag(args, "--control-plane-namespace") == namespace
    assert flag(args, "--control-plane-trust-domain") == "cluster.local"
    assert flag(args, "--trust-anchors-file") == "/var/run/secrets/dapr.io/tls/ca.crt"
    assert "--enable-mtls" in args  # daprsystem has mtls.enabled: true
    env = {e["name"]: e for e in daprd["env"]}
    assert env["NAMESPACE"]["value"] == namespace
    assert env["DAPR_TRUST_ANCHORS"]["value"] == ANCHORS.decode()
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["DAPR_CONTROLPLANE_NAMESPACE"]["value"] == namespace
    assert env["DAPR_CONTROLPLANE_TRUST_DOMAIN"]["value"] == "cluster.local"
    mounts = {m["name"]: m["mountPath"] for m in daprd["volumeMounts"]}
    assert mounts["dapr-identity-token"] == "/var/run/secrets/dapr.io/sentrytoken"
    assert mounts["dapr-trust-bundle"] == "/var/run/secrets/dapr.io/tls"
    volumes = {v["name"]: v for v in stored["spec"]["volumes"]}
    token = volumes["dapr-identity-token"]["projected"]["sources"][0]["serviceAccountToken"]
    assert token == {"audience": sentry_id(namespace), "expirationSeconds": 7200, "path": "token"}
    assert volumes["dapr-trust-bundle"]["configMap"]["name"] == "dapr-trust-bundle"
    app_env = {e["name"]: e["value"] for e in by_name["app"]["env"]}
    assert app_env == {"DAPR_HTTP_PORT": "3500", "DAPR_GRPC_PORT": "50001"}

    plain = create_pod(kube, namespace, "plain-1", "plain")
    assert sorted(containers(plain)) == ["app"]
    assert "env" not in containers(plain)["app"]
    assert not [v for v in plain["spec"].get("volumes", []) if v["name"].startswith("dapr-")]

    off = create_pod(kube, namespace, "off-1", "plain", {"dapr.io/enabled": "false"})
    assert sorted(containers(off)) == ["app"]


def test_mtls_disabled_in_daprsystem_drops_enable_mtls(
    kube: Testbed, namespace: str, injector: InjectorProcess
) -> None:
    path = f"/apis/dapr.io/v1alpha1/namespaces/{namespace}/configurations/daprsystem"
    conf = kube.must("GET", path)
    conf["spec"]["mtls"]["enabled"] = False
    kube.must("PUT", path, conf)
    register(kube, injector, "Fail")
    pod = create_pod(kube, namespace, "p", "p", {"dapr.io/enabled": "true"})
    daprd = containers(pod)["daprd"]
    assert "--enable-mtls" not in daprd["args"]
    assert flag(daprd["args"], "--app-id") == "p"  # no dapr.io/app-id: the Pod's name


def test_no_trust_anchors_refuses_with_the_fix(
    kube: Testbed, namespace: str, injector: InjectorProcess
) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps/dapr-trust-bundle"
    cm = kube.must("GET", path)
    cm.pop("data")
    kube.must("PUT", path, cm)
    register(kube, injector, "Fail")
    kube.must(
        "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": "a"}}
    )
    status, out = kube.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/pods",
        {
            "metadata": {"name": "a", "annotations": {"dapr.io/enabled": "true"}},
            "spec": {"serviceAccountName": "a", "containers": [{"name": "app", "image": "x"}]},
        },
    )
    assert status >= 400
    assert f"ConfigMap {namespace}/dapr-trust-bundle has no ca.crt yet" in out["message"]


def test_bad_annotation_refuses_the_pod_naming_it(
    kube: Testbed, namespace: str, injector: InjectorProcess
) -> None:
    register(kube, injector, "Fail")
    kube.must(
        "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": "a"}}
    )
    status, out = kube.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/pods",
        {
            "metadata": {
                "name": "a",
                "annotations": {"dapr.io/enabled": "true", "dapr.io/app-port": "http"},
            },
            "spec": {"serviceAccountName": "a", "containers": [{"name": "app", "image": "x"}]},
        },
    )
    assert status == 400, out
    assert "annotation dapr.io/app-port: 'http' is not a port number (1-65535)" in out["message"]


@pytest.mark.parametrize(("policy", "admitted"), [("Fail", False), ("Ignore", True)])
def test_webhook_down_follows_failure_policy(
    kube: Testbed, namespace: str, injector: InjectorProcess, policy: str, admitted: bool
) -> None:
    register(kube, injector, policy)
    injector.stop()
    kube.must(
        "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": "a"}}
    )
    status, out = kube.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/pods",
        {
            "metadata": {"name": "a", "annotations": {"dapr.io/enabled": "true"}},
            "spec": {"serviceAccountName": "a", "containers": [{"name": "app", "image": "x"}]},
        },
    )
    if admitted:
        assert status == 201, out
        assert sorted(containers(out)) == ["app"]
    else:
        assert status == 500, out
        assert 'failed calling webhook "sidecar-injector.dapr.io"' in out["message"]


def test_ca_bundle_patch_without_rbac_stops_with_the_fix(
    kube: Testbed, namespace: str, dapr_crds: None, tmp_path: Path
) -> None:
    kube.must(
        "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": "nobody"}}
    )
    token = service_account_token(kube, namespace, "nobody")
    proc = InjectorProcess(
        kube, namespace, tmp_path, write_kubeconfig(kube, tmp_path / "kubeconfig", token)
    )
    with pytest.raises(AssertionError, match="injector exited 2"):
        proc.start("--webhook-ca-file", str(proc.pki / "ca.crt"))
    log = proc.log()
    assert "cannot set the caBundle of MutatingWebhookConfiguration 'dapr-sidecar-injector'" in log
    assert "needs `patch` on it" in log
    assert "BEGIN CERTIFICATE" not in log
