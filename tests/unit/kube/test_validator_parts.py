"""The validator's JWT claim and permission texts (no I/O)."""

from __future__ import annotations

import jwt
import pytest

from pysentry.errors import RequestDenied
from pysentry.kube.access import Permission
from pysentry.sentry.k8s_validator import pod_name_claim


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
