"""Sentry ``--mode kubernetes``: RBAC, the Configuration CRD, health, metrics, fatal errors."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from pysentry.testing import TestCA
from tests.integration.sentry.conftest import free_port, leaf_and_chain, make_request
from tests.k8s.build import build_testbed
from tests.k8s.cluster import (
    apply_dapr_crds,
    chart_objects,
    create_pod,
    pod_token,
    sentry_rbac,
    write_kubeconfig,
)
from tests.k8s.sentry import KubeLauncher, wait_exit
from tests.k8s.testbed import Testbed, start_testbed


@pytest.mark.parametrize(
    ("resource", "verb", "named"),
    [
        ("tokenreviews", "create", "create tokenreviews.authentication.k8s.io (all namespaces)"),
        ("secrets", "update", "update secrets 'dapr-trust-bundle' in namespace"),
        ("pods", "watch", "watch pods (all namespaces)"),
    ],
)
def test_one_permission_less_than_the_chart_is_a_clear_error(
    kube: Testbed,
    namespace: str,
    kube_sentry: KubeLauncher,
    resource: str,
    verb: str,
    named: str,
) -> None:
    chart_objects(kube, namespace)
    sentry_rbac(kube, namespace, drop=(resource, verb))
    sentry = kube_sentry(namespace, wait=False)
    assert wait_exit(sentry) == 1
    log = sentry.log_text()
    assert "Sentry's Kubernetes user lacks permissions it needs: " in log
    assert named in log
    assert log.count("lacks permissions") == 1
    secret = kube.must("GET", f"/api/v1/namespaces/{namespace}/secrets/dapr-trust-bundle")
    assert not secret.get("data")  # nothing was generated half-way


def test_an_unreachable_api_server_at_start_is_fatal(
    kube: Testbed, namespace: str, kube_sentry: KubeLauncher, tmp_path: Path
) -> None:
    nowhere = write_kubeconfig(kube, tmp_path / "nowhere", "token")
    port = free_port()
    nowhere.write_text(nowhere.read_text().replace(kube.url, f"https://127.0.0.1:{port}"))
    sentry = kube_sentry(namespace, kubeconfig=nowhere, wait=False)
    assert wait_exit(sentry) == 1
    assert (
        f"cannot reach the Kubernetes API server at 'https://127.0.0.1:{port}'" in sentry.log_text()
    )


def test_a_missing_configuration_is_fatal(
    kube: Testbed, namespace: str, kube_sentry: KubeLauncher
) -> None:
    chart_objects(kube, namespace)
    sentry_rbac(kube, namespace)
    sentry = kube_sentry(namespace, "--config", "nosuchconfig", wait=False)
    assert wait_exit(sentry) == 1
    assert (
        f"config CRD not found: Configuration {namespace}/nosuchconfig does not exist"
        in sentry.log_text()
    )


async def test_mtls_settings_health_metrics_and_expiry_warnings(
    kube: Testbed, namespace: str, kube_sentry: KubeLauncher
) -> None:
    ca = TestCA.create("cluster.local", namespace=namespace, ttl=timedelta(days=10))
    bundle = {
        "ca.crt": ca.anchors_pem(),
        "issuer.crt": ca.bundle.issuer_chain_pem(),
        "issuer.key": ca.bundle.issuer_key_pem(),
    }
    chart_objects(kube, namespace, bundle=bundle, configmap_ca=ca.anchors_pem())
    path = f"/apis/dapr.io/v1alpha1/namespaces/{namespace}/configurations/daprsystem"
    config = kube.must("GET", path)
    config["spec"]["mtls"]["workloadCertTTL"] = "1h"
    kube.must("PUT", path, config)
    sentry_rbac(kube, namespace)
    sentry = kube_sentry(namespace)
    log = sentry.log_text()
    assert "Dapr root certificate expiration warning: certificate expires in 9 days" in log
    assert (
        f"Adding validator 'kubernetes' with Sentry ID: spiffe://cluster.local/ns/{namespace}"
        "/dapr-sentry" in log
    )
    assert "Using validator 'kubernetes'" in log
    status, body = sentry.healthz()
    assert status == 200
    assert body["detail"]["kubernetes-api"] == f"connected to {kube.url}"  # type: ignore[index]
    metrics = sentry.metrics()
    expiry = ca.bundle.issuer_not_after.timestamp()
    values = {
        line.split()[0]: float(line.split()[1])
        for line in metrics.splitlines()
        if line and not line.startswith("#")
    }
    assert values["dapr_sentry_issuercert_expiry_timestamp"] == expiry
    create_pod(kube, namespace, "web-0", "web", {"dapr.io/app-id": "web"})
    token = pod_token(kube, namespace, "web-0", "web", namespace)
    response = await sentry.sign(make_request("web", namespace, token=token), ca.anchors_pem())
    leaf = leaf_and_chain(response)[0]
    ttl = leaf.not_valid_after_utc - datetime.now(UTC)
    assert timedelta(minutes=55) < ttl <= timedelta(hours=1), ttl


def test_healthz_reports_a_lost_api_server(
    namespace: str, kube_sentry: KubeLauncher, tmp_path: Path
) -> None:
    """On a private API server, stopped under a running Sentry."""
    own = start_testbed(build_testbed(), tmp_path / "own")
    try:
        apply_dapr_crds(own)
        own.must("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
        chart_objects(own, namespace)
        sentry_rbac(own, namespace)
        launcher = KubeLauncher(own, tmp_path)
        sentry = launcher(namespace)
        try:
            _, body = sentry.healthz()
            assert body["detail"]["kubernetes-api"] == f"connected to {own.url}"  # type: ignore[index]
            own.procs[1].kill()  # the API server goes away (a crash, not a drain)
            deadline = time.monotonic() + 15
            while True:
                status, body = sentry.healthz()
                detail = str(body["detail"].get("kubernetes-api"))  # type: ignore[attr-defined]
                if detail.startswith("unreachable: "):
                    break
                assert time.monotonic() < deadline, body
                time.sleep(0.2)
            assert status == 200  # signing keeps its CA; token reviews fail meanwhile
            assert "Reading Secret" in sentry.log_text()
        finally:
            launcher.stop_all()
    finally:
        own.stop()


async def test_jwks_keeps_working_next_to_the_kubernetes_validator(
    kube: Testbed, namespace: str, kube_sentry: KubeLauncher
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk["kid"] = "k1"
    chart_objects(kube, namespace)
    path = f"/apis/dapr.io/v1alpha1/namespaces/{namespace}/configurations/daprsystem"
    config = kube.must("GET", path)
    config["spec"]["mtls"]["tokenValidators"] = [
        {"name": "jwks", "options": {"source": json.dumps({"keys": [jwk]})}}
    ]
    kube.must("PUT", path, config)
    sentry_rbac(kube, namespace)
    sentry = kube_sentry(namespace)
    log = sentry.log_text()
    assert "Adding validator 'kubernetes'" in log
    assert "Adding validator 'jwks'" in log
    assert "Using validator 'kubernetes'" in log
    sentry_id = f"spiffe://cluster.local/ns/{namespace}/dapr-sentry"
    now = int(time.time())
    token = jwt.encode(
        {"sub": "spiffe://public/ns/jobs/batch", "aud": sentry_id, "iat": now, "exp": now + 600},
        key,
        algorithm="ES256",
        headers={"kid": "k1"},
    )
    request = make_request("batch", "jobs", token=token, token_validator=3)  # JWKS
    response = await sentry.sign(request)
    leaf = leaf_and_chain(response)[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://public/ns/jobs/batch"
    ]
    # the same token through the default (kubernetes) validator is not a service-account token
    with pytest.raises(GRPCError) as caught:
        await sentry.sign(make_request("batch", "jobs", token=token))
    assert caught.value.status == Status.PERMISSION_DENIED
