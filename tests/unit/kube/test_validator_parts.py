"""The validator's JWT claim and permission texts (no I/O)."""

from __future__ import annotations

from typing import cast

import jwt
import pytest

from pysentry.errors import ConfigError, RequestDenied
from pysentry.kube.access import Permission
from pysentry.kube.client import KubeClient
from pysentry.sentry.k8s_mode import check_not_root
from pysentry.sentry.k8s_validator import KubernetesValidator, pod_name_claim
from pysentry.sentry.validators import SignRequest
from pysentry.spiffe import SpiffeId, TrustDomain


def test_pod_name_claim() -> None:
    token = jwt.encode({"kubernetes.io": {"pod": {"name": "web-0"}}}, "k" * 32, "HS256")
    assert pod_name_claim(token) == "web-0"
    bare = jwt.encode({"sub": "x"}, "k" * 32, "HS256")
    with pytest.raises(RequestDenied, match=r"^kubernetes.io/pod/name claim is missing"):
        pod_name_claim(bare)
    with pytest.raises(RequestDenied, match=r"^failed to parse Kubernetes token: "):
        pod_name_claim("not-a-jwt")


def test_permission_texts() -> None:
    assert str(Permission("list", "configurations", group="dapr.io")) == (
        "list configurations.dapr.io (all namespaces)"
    )
    assert str(Permission("get", "secrets", namespace="ns", name="b")) == (
        "get secrets 'b' in namespace 'ns'"
    )


async def test_not_ready_until_both_caches_have_synced() -> None:
    validator = KubernetesValidator(
        cast(KubeClient, None),
        sentry_id=SpiffeId.parse("spiffe://cluster.local/ns/d/dapr-sentry"),
        control_plane_namespace="d",
        control_plane_trust_domain=TrustDomain("cluster.local"),
    )
    request = SignRequest(app_id="web", namespace="apps", csr_pem=b"x", token="t")
    assert not validator.ready()
    with pytest.raises(RequestDenied, match=r"^validator not ready$"):
        await validator.validate(request)
    validator.pods.synced = True
    with pytest.raises(RequestDenied, match=r"^validator not ready$"):
        await validator.validate(request)
    validator.configurations.synced = True
    assert validator.ready()


def test_root_is_refused_in_kubernetes_mode_unless_overridden() -> None:
    with pytest.raises(ConfigError) as caught:
        check_not_root({}, uid=0)
    assert str(caught.value) == (
        "current user UID(0) is root. Dapr must be run as a non-root user in Kubernetes "
        "environments. To override this check, set the environment variable "
        "'DAPR_UNSAFE_SKIP_CONTAINER_UID_GID_CHECK=true'"
    )
    check_not_root({"DAPR_UNSAFE_SKIP_CONTAINER_UID_GID_CHECK": "true"}, uid=0)
    check_not_root({}, uid=1000)
