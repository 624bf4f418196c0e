"""``charts/pysentry`` rendered by the real helm 3.19: lint, and every value combination the
seeds use (issue 11 §1). No API server is needed: these run anywhere helm is built."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from tests.integration.openssl import openssl_recipe
from tests.k8s.cluster import SENTRY_CLUSTER_ROLE_RULES, SENTRY_ROLE_RULES
from tests.k8s.helm import CHART_DIR, Helm, find, session_helm

BUNDLE = "dapr-trust-bundle"


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return session_helm(tmp_path_factory.mktemp("helm-home"))


def args_of(deployment: dict[str, Any]) -> list[str]:
    return list(deployment["spec"]["template"]["spec"]["containers"][0]["args"])


def flag(args: list[str], name: str) -> str:
    assert name in args, f"{name} not in {args}"
    return args[args.index(name) + 1]


def test_lint_is_clean(helm: Helm) -> None:
    done = helm.run(["lint", "--strict", str(CHART_DIR)])
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


def test_defaults_render_an_empty_bundle_and_daprs_settings(helm: Helm) -> None:
    objects = helm.template()
    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
    assert kinds == sorted(
        [
            "CustomResourceDefinition/configurations.dapr.io",
            "Secret/dapr-trust-bundle",
            "ConfigMap/dapr-trust-bundle",
            "Configuration/daprsystem",
            "Deployment/dapr-sentry",
            "Service/dapr-sentry",
            "ServiceAccount/dapr-sentry",
            "ClusterRole/dapr-sentry",
            "ClusterRoleBinding/dapr-sentry",
            "Role/dapr-sentry",
            "RoleBinding/dapr-sentry",
            "Deployment/dapr-sidecar-injector",
            "Service/dapr-sidecar-injector",
            "MutatingWebhookConfiguration/dapr-sidecar-injector",
            "ServiceAccount/dapr-injector",
            "ClusterRole/dapr-injector",
            "ClusterRoleBinding/dapr-injector",
            "Role/dapr-injector",
            "RoleBinding/dapr-injector",
            "ClusterRole/dapr-configuration-reader",
            "ClusterRoleBinding/dapr-configuration-reader",
        ]
    )
    assert "data" not in find(objects, "Secret", BUNDLE)
    assert "data" not in find(objects, "ConfigMap", BUNDLE)
    config = find(objects, "Configuration", "daprsystem")
    assert config["metadata"]["namespace"] == "dapr-system"
    assert config["spec"] == {
        "mtls": {
            "enabled": True,
            "workloadCertTTL": "24h",
            "allowedClockSkew": "15m",
            "controlPlaneTrustDomain": "cluster.local",
            "sentryAddress": "dapr-sentry.dapr-system.svc.cluster.local:443",
        }
    }
    sentry = find(objects, "Deployment", "dapr-sentry")
    assert sentry["spec"]["replicas"] == 1
    pod = sentry["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "dapr-sentry"
    container = pod["containers"][0]
    assert container["image"] == "ghcr.io/pysentry/pysentry:0.1.0"
    args = container["args"]
    assert flag(args, "--mode") == "kubernetes"
    assert flag(args, "--trust-domain") == "cluster.local"
    assert container["env"][0] == {
        "name": "NAMESPACE",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
    }
    assert pod["volumes"] == [
        {"name": "credentials", "secret": {"secretName": BUNDLE}},
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
    ]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"credentials": "/var/run/secrets/dapr.io/credentials", "tmp": "/tmp"}
    # the root filesystem is read-only: --workers' metrics files need a writable $TMPDIR
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    service = find(objects, "Service", "dapr-sentry")
    assert service["spec"]["ports"][0] == {
        "name": "grpc",
        "protocol": "TCP",
        "port": 443,
        "targetPort": 50001,
    }
    assert find(objects, "Role", "dapr-sentry")["rules"] == SENTRY_ROLE_RULES
    assert find(objects, "ClusterRole", "dapr-sentry")["rules"] == SENTRY_CLUSTER_ROLE_RULES
    binding = find(objects, "ClusterRoleBinding", "dapr-sentry")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "dapr-sentry", "namespace": "dapr-system"}
    ]
    webhook = find(objects, "MutatingWebhookConfiguration", "dapr-sidecar-injector")["webhooks"][0]
    assert webhook["clientConfig"] == {
        "service": {"namespace": "dapr-system", "name": "dapr-sidecar-injector", "path": "/mutate"}
    }
    assert webhook["failurePolicy"] == "Ignore"
    injector = find(objects, "Deployment", "dapr-sidecar-injector")["spec"]["template"]["spec"]
    # the serving certificate comes from Sentry: no TLS files, Dapr's token volume and anchors
    injector_container = injector["containers"][0]
    assert injector["serviceAccountName"] == "dapr-injector"
    assert not [a for a in injector_container["args"] if a.startswith("--tls-")]
    assert "--webhook-ca-file" not in injector_container["args"]
    assert {"name": "DAPR_TRUST_ANCHORS_FILE", "value": "/var/run/secrets/dapr.io/tls/ca.crt"} in (
        injector_container["env"]
    )
    mounts = {m["name"]: m["mountPath"] for m in injector_container["volumeMounts"]}
    assert mounts == {
        "dapr-trust-bundle": "/var/run/secrets/dapr.io/tls",
        "dapr-identity-token": "/var/run/secrets/dapr.io/sentrytoken",
    }
    volumes = {v["name"]: v for v in injector["volumes"]}
    assert volumes["dapr-identity-token"]["projected"]["sources"] == [
        {
            "serviceAccountToken": {
                "path": "token",
                "expirationSeconds": 600,
                "audience": "spiffe://cluster.local/ns/dapr-system/dapr-sentry",
            }
        }
    ]
    injector_rules = find(objects, "ClusterRole", "dapr-injector")["rules"]
    assert {
        "apiGroups": ["admissionregistration.k8s.io"],
        "resources": ["mutatingwebhookconfigurations"],
        "verbs": ["patch"],
        "resourceNames": ["dapr-sidecar-injector"],
    } in injector_rules
    # app ServiceAccounts may `get` Configurations, nothing else (daprd reads its --config)
    assert find(objects, "ClusterRole", "dapr-configuration-reader")["rules"] == [
        {"apiGroups": ["dapr.io"], "resources": ["configurations"], "verbs": ["get"]}
    ]
    assert find(objects, "ClusterRoleBinding", "dapr-configuration-reader")["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:serviceaccounts"}
    ]


def test_injector_from_a_tls_secret_and_per_namespace_config_readers(helm: Helm) -> None:
    objects = helm.template(
        [
            "--set",
            "dapr_sidecar_injector.tlsSecretName=dapr-sidecar-injector-tls,"
            "dapr_sidecar_injector.configurationReader.namespaces={shop,billing}",
        ]
    )
    injector = find(objects, "Deployment", "dapr-sidecar-injector")["spec"]["template"]["spec"]
    injector_args = injector["containers"][0]["args"]
    assert flag(injector_args, "--tls-cert-file") == "/var/run/secrets/dapr.io/webhook/tls.crt"
    assert flag(injector_args, "--tls-key-file") == "/var/run/secrets/dapr.io/webhook/tls.key"
    assert flag(injector_args, "--webhook-ca-file") == "/var/run/secrets/dapr.io/webhook/ca.crt"
    assert {"name": "webhook-tls", "secret": {"secretName": "dapr-sidecar-injector-tls"}} in (
        injector["volumes"]
    )
    assert "dapr-identity-token" not in {v["name"] for v in injector["volumes"]}
    bindings = [o for o in objects if o["kind"] == "RoleBinding"
                and o["metadata"]["name"] == "dapr-configuration-reader"]  # fmt: skip
    assert {b["metadata"]["namespace"]: b["subjects"][0]["name"] for b in bindings} == {
        "shop": "system:serviceaccounts:shop",
        "billing": "system:serviceaccounts:billing",
    }
    assert not [o for o in objects if o["kind"] == "ClusterRoleBinding"
                and o["metadata"]["name"] == "dapr-configuration-reader"]  # fmt: skip
    off = helm.template(["--set", "dapr_sidecar_injector.configurationReader.enabled=false"])
    assert not [o for o in off if o["metadata"]["name"] == "dapr-configuration-reader"]


def test_own_certificates_fill_the_secret_and_configmap(helm: Helm, tmp_path: Path) -> None:
    openssl_recipe(tmp_path)
    objects = helm.template(
        [
            "--set-file",
            f"dapr_sentry.tls.issuer.certPEM={tmp_path / 'issuer.crt'}",
            "--set-file",
            f"dapr_sentry.tls.issuer.keyPEM={tmp_path / 'issuer.key'}",
            "--set-file",
            f"dapr_sentry.tls.root.certPEM={tmp_path / 'ca.crt'}",
        ]
    )
    data = find(objects, "Secret", BUNDLE)["data"]
    assert {k: base64.b64decode(v) for k, v in data.items()} == {
        "ca.crt": (tmp_path / "ca.crt").read_bytes(),
        "issuer.crt": (tmp_path / "issuer.crt").read_bytes(),
        "issuer.key": (tmp_path / "issuer.key").read_bytes(),
    }
    assert find(objects, "ConfigMap", BUNDLE)["data"] == {
        "ca.crt": (tmp_path / "ca.crt").read_text()
    }


def test_issuer_filenames_rename_the_secret_keys(helm: Helm, tmp_path: Path) -> None:
    openssl_recipe(tmp_path)
    objects = helm.template(
        [
            "--set-file",
            f"dapr_sentry.tls.issuer.certPEM={tmp_path / 'issuer.crt'}",
            "--set-file",
            f"dapr_sentry.tls.issuer.keyPEM={tmp_path / 'issuer.key'}",
            "--set-file",
            f"dapr_sentry.tls.root.certPEM={tmp_path / 'ca.crt'}",
            "--set",
            "global.issuerFilenames.ca=root.pem,global.issuerFilenames.cert=issuer.pem,"
            "global.issuerFilenames.key=issuer-key.pem",
        ]
    )
    assert sorted(find(objects, "Secret", BUNDLE)["data"]) == [
        "issuer-key.pem",
        "issuer.pem",
        "root.pem",
    ]
    args = args_of(find(objects, "Deployment", "dapr-sentry"))
    assert flag(args, "--issuer-ca-filename") == "root.pem"
    assert flag(args, "--issuer-certificate-filename") == "issuer.pem"
    assert flag(args, "--issuer-key-filename") == "issuer-key.pem"


@pytest.mark.parametrize("given", ["root.certPEM", "issuer.certPEM", "issuer.keyPEM"])
def test_some_but_not_all_certificates_is_refused(helm: Helm, tmp_path: Path, given: str) -> None:
    openssl_recipe(tmp_path)
    pem = tmp_path / ("issuer.key" if given == "issuer.keyPEM" else "ca.crt")
    done = helm.run(
        [
            "template",
            "dapr",
            str(CHART_DIR),
            "--set-file",
            f"dapr_sentry.tls.{given}={pem}",
        ],
        check=False,
    )
    assert done.returncode == 1
    assert "root.certPEM, issuer.certPEM and issuer.keyPEM go together" in done.stderr
    assert "BEGIN" not in done.stderr  # no PEM body in the message


def test_mtls_values_reach_daprsystem_and_sentry(helm: Helm) -> None:
    objects = helm.template(
        [
            "--set",
            "global.mtls.enabled=false,global.mtls.workloadCertTTL=1h,"
            "global.mtls.allowedClockSkew=5m,global.mtls.controlPlaneTrustDomain=example.org,"
            "global.mtls.sentryAddress=sentry.example.org:443",
        ],
        namespace="cp",
    )
    assert find(objects, "Configuration", "daprsystem")["spec"]["mtls"] == {
        "enabled": False,
        "workloadCertTTL": "1h",
        "allowedClockSkew": "5m",
        "controlPlaneTrustDomain": "example.org",
        "sentryAddress": "sentry.example.org:443",
    }
    assert flag(args_of(find(objects, "Deployment", "dapr-sentry")), "--trust-domain") == (
        "example.org"
    )
    injector_env = find(objects, "Deployment", "dapr-sidecar-injector")["spec"]["template"]["spec"][
        "containers"
    ][0]["env"]
    assert {"name": "SENTRY_ADDRESS", "value": "sentry.example.org:443"} in injector_env


@pytest.mark.parametrize(
    ("values", "sentry", "injector"),
    [
        ("global.ha.enabled=true", 3, 3),
        ("global.ha.enabled=true,global.ha.replicaCount=5", 5, 5),
        ("dapr_sentry.replicaCount=2,dapr_sidecar_injector.replicaCount=4", 2, 4),
        ("global.ha.enabled=true,dapr_sentry.replicaCount=2", 3, 3),  # HA wins, as in Dapr
    ],
)
def test_replica_counts(helm: Helm, values: str, sentry: int, injector: int) -> None:
    objects = helm.template(["--set", values])
    assert find(objects, "Deployment", "dapr-sentry")["spec"]["replicas"] == sentry
    assert find(objects, "Deployment", "dapr-sidecar-injector")["spec"]["replicas"] == injector


@pytest.mark.parametrize(
    ("values", "image"),
    [
        (
            "global.registry=registry.example:5000/me,global.tag=1.2.3",
            "registry.example:5000/me/pysentry:1.2.3",
        ),
        ("dapr_sentry.image.name=example.org/own/sentry:9", "example.org/own/sentry:9"),
    ],
)
def test_image_values(helm: Helm, values: str, image: str) -> None:
    objects = helm.template(["--set", values])
    container = find(objects, "Deployment", "dapr-sentry")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["image"] == image


def test_webhook_url_replaces_the_service_and_disabling_drops_the_injector(helm: Helm) -> None:
    objects = helm.template(
        [
            "--set",
            "dapr_sidecar_injector.webhookURL=https://127.0.0.1:4443/mutate,"
            "dapr_sidecar_injector.caBundle=Q0E=,dapr_sidecar_injector.webhookFailurePolicy=Fail",
        ]
    )
    webhook = find(objects, "MutatingWebhookConfiguration", "dapr-sidecar-injector")["webhooks"][0]
    assert webhook["clientConfig"] == {"url": "https://127.0.0.1:4443/mutate", "caBundle": "Q0E="}
    assert webhook["failurePolicy"] == "Fail"
    injector_args = args_of(find(objects, "Deployment", "dapr-sidecar-injector"))
    assert "--webhook-ca-file" not in injector_args  # a given caBundle is left alone
    off = helm.template(["--set", "dapr_sidecar_injector.enabled=false"])
    assert not [o for o in off if "injector" in o["metadata"]["name"]]
    assert find(off, "Deployment", "dapr-sentry")  # Sentry stays
