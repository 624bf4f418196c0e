"""The injector's JSONPatch and AdmissionReview handling without an API server (issue 11 §2)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from pysentry.injector.patch import (
    BadAnnotation,
    InjectorConfig,
    app_id,
    build_patch,
    wants_sidecar,
)
from pysentry.injector.review import BadReview, allow, parse_review

CONFIG = InjectorConfig("dapr-system", "example.org", "img:1")


def pod(annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "apps", "annotations": annotations or {}},
        "spec": {"containers": [{"name": "app", "image": "x"}], **spec},
    }


@pytest.mark.parametrize("value", ["true", "True", "yes", "on", "1", "t", "y"])
def test_truthy_annotation_values_are_daprs(value: str) -> None:
    assert wants_sidecar(pod({"dapr.io/enabled": value}))


@pytest.mark.parametrize("value", ["false", "0", "", "enabled"])
def test_other_values_and_no_annotation_mean_no_sidecar(value: str) -> None:
    assert build_patch(pod({"dapr.io/enabled": value}), CONFIG, "PEM") == []
    assert build_patch(pod(), CONFIG, "PEM") == []


def test_never_injects_twice() -> None:
    twice = pod({"dapr.io/enabled": "true"})
    twice["spec"]["containers"].append({"name": "daprd", "image": "img:1"})
    assert build_patch(twice, CONFIG, "PEM") == []


def test_app_id_falls_back_to_the_name_then_generate_name() -> None:
    assert app_id(pod({"dapr.io/app-id": "orders"})) == "orders"
    assert app_id(pod()) == "p"
    assert app_id({"metadata": {"generateName": "web-7c9-"}}) == "web-7c9"


def test_patch_appends_to_existing_env_and_volumes_and_uses_the_trust_domain() -> None:
    given = pod(
        {"dapr.io/enabled": "true"},
        volumes=[{"name": "data", "emptyDir": {}}],
    )
    given["spec"]["containers"][0]["env"] = [{"name": "DAPR_HTTP_PORT", "value": "9999"}]
    ops = build_patch(given, CONFIG, "PEM")
    paths = [(op["op"], op["path"]) for op in ops]
    assert paths == [
        ("add", "/spec/containers/0/env/-"),  # only DAPR_GRPC_PORT: DAPR_HTTP_PORT is the app's
        ("add", "/spec/containers/-"),
        ("add", "/spec/volumes/-"),
        ("add", "/spec/volumes/-"),
    ]
    assert ops[0]["value"] == {"name": "DAPR_GRPC_PORT", "value": "50001"}
    token = ops[2]["value"]["projected"]["sources"][0]["serviceAccountToken"]
    assert token["audience"] == "spiffe://example.org/ns/dapr-system/dapr-sentry"
    sidecar = ops[1]["value"]
    assert "--sentry-address" in sidecar["args"]
    assert sidecar["args"][sidecar["args"].index("--sentry-address") + 1] == (
        "dapr-sentry.dapr-system.svc.cluster.local:443"
    )


def review(**request: Any) -> bytes:
    base = {"uid": "u1", "kind": {"kind": "Pod"}, "operation": "CREATE", "object": pod()}
    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {**base, **request},
        }
    ).encode()


def test_review_round_trip_carries_uid_and_base64_patch() -> None:
    parsed = parse_review(review())
    out = allow(parsed, [{"op": "add", "path": "/x", "value": 1}])
    assert out["response"]["uid"] == "u1"
    assert out["response"]["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(out["response"]["patch"])) == [
        {"op": "add", "path": "/x", "value": 1}
    ]
    assert "patch" not in allow(parsed, [])["response"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "admission review: not JSON"),
        (b'{"kind": "Pod"}', "expected kind 'AdmissionReview', got 'Pod'"),
        (
            b'{"kind": "AdmissionReview", "apiVersion": "v9"}',
            "unsupported apiVersion 'v9'",
        ),
        (
            b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}',
            "no request or request.uid",
        ),
    ],
)
def test_bad_reviews_name_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(BadReview, match=message):
        parse_review(body)


@pytest.mark.parametrize("port", ["abc", "0", "70000", "-1", "80x"])
def test_bad_app_port_is_refused_naming_the_annotation(port: str) -> None:
    bad = pod({"dapr.io/enabled": "true", "dapr.io/app-port": port})
    with pytest.raises(BadAnnotation, match=f"annotation dapr.io/app-port: '{port}' is not a port"):
        build_patch(bad, CONFIG, "PEM")


def test_the_injected_command_is_one_our_daprd_accepts() -> None:
    from pysentry.sidecar.options import parse_options

    given = pod({"dapr.io/enabled": "true", "dapr.io/app-id": "orders", "dapr.io/app-port": "80"})
    sidecar = next(
        op["value"]
        for op in build_patch(given, CONFIG, "PEM")
        if op["path"] == "/spec/containers/-"
    )
    env = {e["name"]: e.get("value", "") for e in sidecar["env"]}
    options = parse_options(sidecar["args"], env={**env, "POD_NAME": "p"})
    assert (options.mode, options.app_id, options.app_port) == ("kubernetes", "orders", 80)
    assert options.enable_mtls
    assert options.control_plane_namespace == "dapr-system"
    assert options.control_plane_trust_domain == "example.org"
    assert str(options.trust_anchors_file) == "/var/run/secrets/dapr.io/tls/ca.crt"
    assert options.sentry_address == "dapr-sentry.dapr-system.svc.cluster.local:443"
