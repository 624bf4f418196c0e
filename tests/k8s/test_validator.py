"""The ``kubernetes`` validator against the real API server (spec §7.5, issue 10 §4)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest
from cryptography import x509
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from pysentry.proto.dapr.proto.sentry.v1 import sentry_pb2
from pysentry.spiffe import SpiffeId
from tests.integration.sentry.conftest import leaf_and_chain, make_request
from tests.k8s.cluster import (
    chart_objects,
    create_pod,
    pod_token,
    sentry_id,
    sentry_rbac,
    service_account_token,
)
from tests.k8s.sentry import KubeLauncher, KubeSentry
from tests.k8s.testbed import Testbed

TOKEN_CACHE_S = 10.0  # the apiserver caches a successful TokenReview this long


def uri_of(response: sentry_pb2.SignCertificateResponse) -> str:
    leaf = leaf_and_chain(response)[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return str(san.get_values_for_type(x509.UniformResourceIdentifier)[0])


@pytest.fixture(scope="module")
def namespace(kube: Testbed) -> str:
    """One control-plane namespace (and one Sentry) for this module; apps get their own."""
    name = f"cp-{uuid.uuid4().hex[:8]}"
    kube.must("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    return name


@pytest.fixture(scope="module")
def control_plane(
    kube: Testbed, namespace: str, dapr_crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeSentry]:
    chart_objects(kube, namespace)
    sentry_rbac(kube, namespace)
    launcher = KubeLauncher(kube, tmp_path_factory.mktemp("validator"))
    yield launcher(namespace)
    launcher.stop_all()


def app_namespace(kube: Testbed) -> str:
    name = f"app-{uuid.uuid4().hex[:8]}"
    kube.must("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    return name


async def denied(sentry: KubeSentry, request: sentry_pb2.SignCertificateRequest) -> str:
    with pytest.raises(GRPCError) as caught:
        await sentry.sign(request)
    assert caught.value.status == Status.PERMISSION_DENIED
    return str(caught.value.message)


async def test_a_bound_pod_token_gets_its_svid(
    kube: Testbed, namespace: str, control_plane: KubeSentry
) -> None:
    apps = app_namespace(kube)
    create_pod(kube, apps, "web-0", "web", {"dapr.io/app-id": "web"})
    token = pod_token(kube, apps, "web-0", "web", namespace)
    response = await control_plane.sign(make_request("web", apps, token=token))
    assert uri_of(response) == str(SpiffeId.for_app("public", apps, "web"))
    # without dapr.io/app-id, the pod name is the app ID
    create_pod(kube, apps, "plain", "plainsa")
    token = pod_token(kube, apps, "plain", "plainsa", namespace)
    response = await control_plane.sign(make_request("plain", apps, token=token))
    assert uri_of(response) == str(SpiffeId.for_app("public", apps, "plain"))


async def test_refusals_carry_dapr_messages(
    kube: Testbed, namespace: str, control_plane: KubeSentry
) -> None:
    apps = app_namespace(kube)
    create_pod(kube, apps, "web-0", "web", {"dapr.io/app-id": "web"})
    create_pod(kube, apps, "other-0", "other", {"dapr.io/app-id": "other"})
    token = pod_token(kube, apps, "web-0", "web", namespace)
    assert await denied(control_plane, make_request("evil", apps, token=token)) == (
        "app-id mismatch. expected: web, received: evil"
    )
    assert await denied(control_plane, make_request("web", namespace, token=token)) == (
        f"namespace mismatch; received namespace: {namespace}"
    )
    wrong_aud = pod_token(kube, apps, "web-0", "web", namespace, audience="spiffe://x/ns/y/z")
    message = await denied(control_plane, make_request("web", apps, token=wrong_aud))
    assert message.startswith("invalid token: [invalid bearer token, token audiences ")
    assert "is invalid for the target audiences" in message
    assert await denied(control_plane, make_request("web", apps, token="garbage")) == (
        "invalid token: invalid bearer token"
    )
    message = await denied(control_plane, make_request("web", apps))
    assert message.startswith("token review failed: ")
    # a service-account token that is not bound to a Pod
    unbound = service_account_token(kube, apps, "web", audiences=[sentry_id(namespace)])
    assert await denied(control_plane, make_request("web", apps, token=unbound)) == (
        "kubernetes.io/pod/name claim is missing from Kubernetes token"
    )
    assert await denied(control_plane, make_request("a.b", apps, token=token)) == (
        "invalid request: parameter app-id cannot contain dots"
    )


async def eventually_denied(
    sentry: KubeSentry,
    request: sentry_pb2.SignCertificateRequest,
    expected: str,
    timeout: float = 10.0,
) -> None:
    deadline = time.monotonic() + timeout
    message = ""
    while time.monotonic() < deadline:
        try:
            await sentry.sign(request)
        except GRPCError as err:
            message = str(err.message)
            if message == expected:
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"expected {expected!r}, last answer {message!r}")


async def test_a_deleted_pod_and_a_pod_with_another_service_account_are_refused(
    kube: Testbed, namespace: str, control_plane: KubeSentry
) -> None:
    apps = app_namespace(kube)
    requests = []
    for pod in ("gone-0", "swapped-0"):
        create_pod(kube, apps, pod, "web", {"dapr.io/app-id": "web"})
        request = make_request("web", apps, token=pod_token(kube, apps, pod, "web", namespace))
        await control_plane.sign(request)  # the API server now caches this review for 10 s
        requests.append(request)
    gone, swapped = requests
    deleted_at = time.monotonic()
    for pod in ("gone-0", "swapped-0"):
        kube.must("DELETE", f"/api/v1/namespaces/{apps}/pods/{pod}?gracePeriodSeconds=0")
    # a new Pod of the same name, running as another service account
    create_pod(kube, apps, "swapped-0", "other", {"dapr.io/app-id": "web"})
    await eventually_denied(control_plane, gone, "failed to get pod of identity")
    await eventually_denied(control_plane, swapped, "pod service account mismatch")
    assert time.monotonic() - deleted_at < TOKEN_CACHE_S, "too slow to see the cached review"
    # past the review cache, the token of the deleted Pod no longer authenticates at all
    await asyncio.sleep(max(0.0, TOKEN_CACHE_S + 1 - (time.monotonic() - deleted_at)))
    message = await denied(control_plane, gone)
    assert message.startswith("invalid token: "), message


async def test_the_trust_domain_comes_from_the_pods_configuration(
    kube: Testbed, namespace: str, control_plane: KubeSentry
) -> None:
    apps = app_namespace(kube)
    kube.must(
        "POST",
        f"/apis/dapr.io/v1alpha1/namespaces/{apps}/configurations",
        {
            "apiVersion": "dapr.io/v1alpha1",
            "kind": "Configuration",
            "metadata": {"name": "appconfig"},
            "spec": {"accessControl": {"defaultAction": "deny", "trustDomain": "example.org"}},
        },
    )
    create_pod(kube, apps, "web-0", "web", {"dapr.io/app-id": "web", "dapr.io/config": "appconfig"})
    token = pod_token(kube, apps, "web-0", "web", namespace)
    response = await control_plane.sign(make_request("web", apps, token=token))
    assert uri_of(response) == f"spiffe://example.org/ns/{apps}/web"
    create_pod(
        kube, apps, "lost-0", "lost", {"dapr.io/app-id": "lost", "dapr.io/config": "missing"}
    )
    token = pod_token(kube, apps, "lost-0", "lost", namespace)
    assert await denied(control_plane, make_request("lost", apps, token=token)) == (
        "failed to get configuration"
    )


async def test_control_plane_annotation_outside_the_control_plane_namespace(
    kube: Testbed, namespace: str, control_plane: KubeSentry
) -> None:
    apps = app_namespace(kube)
    create_pod(kube, apps, "fake-op", "fakeop", {"dapr.io/control-plane": "operator"})
    token = pod_token(kube, apps, "fake-op", "fakeop", namespace)
    assert await denied(control_plane, make_request("dapr-operator", apps, token=token)) == (
        f"control plane service in namespace '{apps}' is not allowed"
    )


async def test_control_plane_pods_in_the_control_plane_namespace(
    kube: Testbed, namespace: str, control_plane: KubeSentry
) -> None:
    create_pod(
        kube, namespace, "operator-0", "dapr-operator", {"dapr.io/control-plane": "operator"}
    )
    token = pod_token(kube, namespace, "operator-0", "dapr-operator", namespace)
    response = await control_plane.sign(make_request("dapr-operator", namespace, token=token))
    assert uri_of(response) == f"spiffe://cluster.local/ns/{namespace}/dapr-operator"
    create_pod(kube, namespace, "odd-0", "odd", {"dapr.io/control-plane": "dashboard"})
    token = pod_token(kube, namespace, "odd-0", "odd", namespace)
    assert await denied(control_plane, make_request("dapr-dashboard", namespace, token=token)) == (
        "unknown control plane service 'dashboard'"
    )
