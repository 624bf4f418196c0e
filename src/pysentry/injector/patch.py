"""The sidecar injector's core, with no I/O: a Pod in, the RFC 6902 JSONPatch that adds ``daprd``.

What is added is what Dapr v1.16's injector adds for mTLS (``pkg/injector/patcher``), plus one
pysentry addition: the ``dapr-trust-bundle`` ConfigMap mounted at ``/var/run/secrets/dapr.io/tls``
and ``--trust-anchors-file`` pointing into it, so a sidecar picks up a new root without a restart
(``DAPR_TRUST_ANCHORS`` is still set, as Dapr sets it, for tools that read the Pod spec).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ENABLED = "dapr.io/enabled"
APP_ID = "dapr.io/app-id"
APP_PORT = "dapr.io/app-port"
CONFIG = "dapr.io/config"
APP_PROTOCOL = "dapr.io/app-protocol"
LOG_LEVEL = "dapr.io/log-level"
SIDECAR_NAME = "daprd"
TOKEN_VOLUME = "dapr-identity-token"
TOKEN_MOUNT = "/var/run/secrets/dapr.io/sentrytoken"
TOKEN_EXPIRATION_S = 7200
BUNDLE_VOLUME = "dapr-trust-bundle"
BUNDLE_MOUNT = "/var/run/secrets/dapr.io/tls"
HTTP_PORT, GRPC_PORT, INTERNAL_GRPC_PORT, PUBLIC_PORT, METRICS_PORT = 3500, 50001, 50002, 3501, 9090
_TRUTHY = frozenset({"y", "yes", "true", "t", "on", "1"})  # Dapr's utils.IsTruthy
Patch = list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class InjectorConfig:
    control_plane_namespace: str
    trust_domain: str  # the control plane's (global.mtls.controlPlaneTrustDomain)
    sidecar_image: str
    sentry_address: str = ""  # "" = dapr-sentry.<ns>.svc.<cluster domain>:443
    cluster_domain: str = "cluster.local"

    @property
    def sentry(self) -> str:
        return self.sentry_address or (
            f"dapr-sentry.{self.control_plane_namespace}.svc.{self.cluster_domain}:443"
        )

    @property
    def sentry_spiffe_id(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.control_plane_namespace}/dapr-sentry"


def wants_sidecar(pod: dict[str, Any]) -> bool:
    """Annotated ``dapr.io/enabled`` truthy, and no ``daprd`` container yet (never twice)."""
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    if str(annotations.get(ENABLED, "")).strip().lower() not in _TRUTHY:
        return False
    containers = (pod.get("spec") or {}).get("containers") or []
    return not any(c.get("name") == SIDECAR_NAME for c in containers)


def app_id(pod: dict[str, Any]) -> str:
    """``dapr.io/app-id``, else the Pod's name (as Dapr), else its ``generateName`` stem."""
    meta = pod.get("metadata") or {}
    given = (meta.get("annotations") or {}).get(APP_ID)
    if given:
        return str(given)
    return str(meta.get("name") or str(meta.get("generateName") or "").rstrip("-"))


class BadAnnotation(ValueError):
    """An annotation's value that daprd would refuse (the Pod is refused, naming it)."""


def _port_annotation(annotations: dict[str, Any], name: str) -> str | None:
    value = annotations.get(name)
    if value is None or value == "":
        return None
    text = str(value).strip()
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise BadAnnotation(f"annotation {name}: {value!r} is not a port number (1-65535)")
    return text


def sidecar_container(
    pod: dict[str, Any], config: InjectorConfig, trust_anchors: str, mtls: bool
) -> dict[str, Any]:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    namespace = (pod.get("metadata") or {}).get("namespace") or ""
    cp = config.control_plane_namespace
    args = [
        "--mode", "kubernetes",
        "--dapr-http-port", str(HTTP_PORT),
        "--dapr-grpc-port", str(GRPC_PORT),
        "--dapr-internal-grpc-port", str(INTERNAL_GRPC_PORT),
        "--dapr-listen-addresses", "[::1],127.0.0.1",
        "--dapr-public-port", str(PUBLIC_PORT),
        "--app-id", app_id(pod),
        "--app-protocol", str(annotations.get(APP_PROTOCOL) or "http"),
        "--log-level", str(annotations.get(LOG_LEVEL) or "info"),
        "--control-plane-address", f"dapr-api.{cp}.svc.{config.cluster_domain}:443",
        "--sentry-address", config.sentry,
        "--control-plane-namespace", cp,
        "--control-plane-trust-domain", config.trust_domain,
        "--trust-anchors-file", f"{BUNDLE_MOUNT}/ca.crt",
    ]  # fmt: skip
    app_port = _port_annotation(annotations, APP_PORT)
    if app_port is not None:
        args += ["--app-port", app_port]
    args += ["--enable-metrics", "--metrics-port", str(METRICS_PORT)]
    if annotations.get(CONFIG):
        args += ["--config", str(annotations[CONFIG])]
    if mtls:
        args.append("--enable-mtls")
    return {
        "name": SIDECAR_NAME,
        "image": config.sidecar_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["daprd"],
        "args": args,
        "env": [
            {"name": "NAMESPACE", "value": namespace},
            {"name": "DAPR_TRUST_ANCHORS", "value": trust_anchors},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "DAPR_CONTROLPLANE_NAMESPACE", "value": cp},
            {"name": "DAPR_CONTROLPLANE_TRUST_DOMAIN", "value": config.trust_domain},
        ],
        "ports": [
            {"name": "dapr-http", "containerPort": HTTP_PORT},
            {"name": "dapr-grpc", "containerPort": GRPC_PORT},
            {"name": "dapr-internal", "containerPort": INTERNAL_GRPC_PORT},
            {"name": "dapr-metrics", "containerPort": METRICS_PORT},
        ],
        "volumeMounts": [
            {"name": TOKEN_VOLUME, "mountPath": TOKEN_MOUNT, "readOnly": True},
            {"name": BUNDLE_VOLUME, "mountPath": BUNDLE_MOUNT, "readOnly": True},
        ],
        "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
    }


def volumes(config: InjectorConfig) -> list[dict[str, Any]]:
    token = {
        "audience": config.sentry_spiffe_id,
        "expirationSeconds": TOKEN_EXPIRATION_S,
        "path": "token",
    }
    return [
        {
            "name": TOKEN_VOLUME,
            "projected": {"defaultMode": 420, "sources": [{"serviceAccountToken": token}]},
        },
        {"name": BUNDLE_VOLUME, "configMap": {"name": BUNDLE_VOLUME}},
    ]


def _app_env_ops(containers: list[dict[str, Any]]) -> Patch:
    """``DAPR_HTTP_PORT``/``DAPR_GRPC_PORT`` for each app container that does not set them."""
    ops: Patch = []
    for index, container in enumerate(containers):
        env = container.get("env")
        have = {e.get("name") for e in env or []}
        adds = [
            {"name": name, "value": str(port)}
            for name, port in (("DAPR_HTTP_PORT", HTTP_PORT), ("DAPR_GRPC_PORT", GRPC_PORT))
            if name not in have
        ]
        if not adds:
            continue
        if env is None:
            ops.append({"op": "add", "path": f"/spec/containers/{index}/env", "value": adds})
        else:
            ops += [
                {"op": "add", "path": f"/spec/containers/{index}/env/-", "value": add}
                for add in adds
            ]
    return ops


def build_patch(
    pod: dict[str, Any], config: InjectorConfig, trust_anchors: str, *, mtls: bool = True
) -> Patch:
    """The JSONPatch that injects ``daprd`` (``[]`` when the Pod does not want one).

    :class:`BadAnnotation` when an annotation's value would make daprd fail to start."""
    if not wants_sidecar(pod):
        return []
    spec = pod.get("spec") or {}
    containers = list(spec.get("containers") or [])
    ops = _app_env_ops(containers)
    ops.append(
        {
            "op": "add",
            "path": "/spec/containers/-",
            "value": sidecar_container(pod, config, trust_anchors, mtls),
        }
    )
    existing = {v.get("name") for v in spec.get("volumes") or []}
    new = [v for v in volumes(config) if v["name"] not in existing]
    if spec.get("volumes") is None:
        ops.append({"op": "add", "path": "/spec/volumes", "value": new})
    else:
        ops += [{"op": "add", "path": "/spec/volumes/-", "value": v} for v in new]
    return ops
