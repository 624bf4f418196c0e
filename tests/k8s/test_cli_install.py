"""``dapr init -k`` and ``dapr uninstall -k`` against the testbed, with the real helm v3.19.0.

The CLI runs as a user would (a subprocess, ``KUBECONFIG`` the testbed's admin kubeconfig,
``DAPR_HELM`` the built helm). Pods never run here, so the tests read back what was installed.
The chart's webhook would call the ``dapr-sidecar-injector`` Service (nothing answers in the
loopback-only namespace, and its ``failurePolicy`` is ``Ignore``); ``--set`` narrows it to the
test's namespace anyway, so no other test's Pods are ever sent to it.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.cli.conftest import Result, run_dapr
from tests.k8s.build import KUBERNETES_VERSION, build_testbed
from tests.k8s.cluster import apply_dapr_crds, service_account_token, write_kubeconfig
from tests.k8s.helm import Helm, session_helm
from tests.k8s.test_helm_install import BUNDLE, CRD, WEBHOOKS, namespaced_paths, secret_data
from tests.k8s.testbed import Testbed, free_port

SUCCESS = (
    "✅  Success! Dapr has been installed to namespace {}. To verify, run `dapr status -k' in "
    "your terminal. To get started, go here: https://docs.dapr.io/getting-started"
)
DEPLOYING = "✅  Deploying the Dapr control plane with {} version to your cluster..."
Dapr = Callable[..., Result]


@pytest.fixture
def helm(kube: Testbed, dapr_crds: None, tmp_path: Path) -> Helm:
    built = session_helm(tmp_path / "helm-home")
    return Helm(built.binary, built.home, kube.kubeconfig)


@pytest.fixture
def dapr(kube: Testbed, helm: Helm, tmp_path: Path) -> Dapr:
    home = tmp_path / "home"
    home.mkdir()

    def call(*args: str, env: dict[str, str] | None = None) -> Result:
        full = {k: v for k, v in helm.env().items() if not k.startswith("DAPR_")}
        full.update(KUBECONFIG=str(kube.kubeconfig), DAPR_HELM=str(helm.binary))
        full.update(env or {})
        return run_dapr(home, *args, env=full, timeout=120)

    return call


@pytest.fixture
def local_dapr(
    kube: Testbed,
    helm: Helm,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Dapr:
    """``dapr`` in this process (no interpreter start-up: the bad-input cases are many), with the
    same environment as :func:`dapr`."""
    from pysentry.cli.main import main

    home = tmp_path / "local-home"
    home.mkdir()

    def call(*args: str, env: dict[str, str] | None = None) -> Result:
        with monkeypatch.context() as patch:
            full = dict(helm.env(), HOME=str(home), KUBECONFIG=str(kube.kubeconfig))
            full["DAPR_HELM"] = str(helm.binary)
            full.update(env or {})
            for key, value in full.items():
                patch.setenv(key, value)
            capsys.readouterr()
            try:
                main(list(args))
                code = 0
            except SystemExit as done:
                code = int(done.code or 0)
            out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return call


@pytest.fixture
def release(helm: Helm, namespace: str) -> Iterator[str]:
    """Removes a release the test left behind (cluster-scoped names would block the next)."""
    yield namespace
    helm.run(["uninstall", "dapr", "--namespace", namespace], check=False)


def only_here(namespace: str) -> list[str]:
    return [
        "--set",
        rf"dapr_sidecar_injector.namespaceSelector.matchLabels.kubernetes\.io/metadata\.name={namespace}",
    ]


def run_kubectl(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def releases(helm: Helm, namespace: str) -> list[tuple[str, str]]:
    out = helm.run(["list", "--namespace", namespace, "--all", "-o", "json"]).stdout
    return [(r["name"], r["status"]) for r in json.loads(out)]


def deployment(kube: Testbed, namespace: str, name: str) -> dict[str, object]:
    return dict(kube.must("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"))


def container(kube: Testbed, namespace: str, name: str) -> dict[str, object]:
    spec = deployment(kube, namespace, name)["spec"]
    return dict(spec["template"]["spec"]["containers"][0])  # type: ignore[index]


def left_over(kube: Testbed, namespace: str) -> list[str]:
    paths = namespaced_paths(namespace)
    return [what for what, path in paths.items() if kube.request("GET", path)[0] != 404]


def test_init_k_installs_the_chart_and_uninstall_k_removes_it(
    kube: Testbed, helm: Helm, dapr: Dapr, local_dapr: Dapr, release: str, tmp_path: Path
) -> None:
    ns = release
    done = dapr("init", "-k", "-n", ns, *only_here(ns))
    assert done.returncode == 0, done.output
    lines = done.stdout.splitlines()
    assert lines[0] == "⌛  Making the jump to hyperspace..."
    assert DEPLOYING.format("latest") in lines
    assert lines[-1] == SUCCESS.format(ns)
    assert releases(helm, ns) == [("dapr", "deployed")]
    # The testbed's kubectl (built with it) sees the same install, at the pinned version.
    kubectl = [str(build_testbed().kubectl), "--kubeconfig", str(kube.kubeconfig)]
    versions = json.loads(run_kubectl([*kubectl, "version", "-o", "json"]))
    assert versions["clientVersion"]["gitVersion"] == KUBERNETES_VERSION
    assert versions["serverVersion"]["gitVersion"] == KUBERNETES_VERSION
    names = run_kubectl([*kubectl, "get", "deployments", "-n", ns, "-o", "name"]).split()
    assert names == ["deployment.apps/dapr-sentry", "deployment.apps/dapr-sidecar-injector"]

    assert left_over(kube, ns) == list(namespaced_paths(ns))  # every object is there
    for name in ("dapr-sentry", "dapr-sidecar-injector"):
        assert deployment(kube, ns, name)["spec"]["replicas"] == 1  # type: ignore[index]
    sentry = container(kube, ns, "dapr-sentry")
    assert sentry["image"] == "ghcr.io/pysentry/pysentry:0.1.0"
    args = sentry["args"]
    assert isinstance(args, list) and args[args.index("--trust-domain") + 1] == "cluster.local"
    config = kube.must("GET", f"/apis/dapr.io/v1alpha1/namespaces/{ns}/configurations/daprsystem")
    assert config["spec"]["mtls"]["enabled"] is True
    assert secret_data(kube, ns) == {}  # Sentry generates the CA at its first start
    webhook = kube.must("GET", f"{WEBHOOKS}/dapr-sidecar-injector")["webhooks"][0]
    assert webhook["failurePolicy"] == "Ignore"
    assert webhook["clientConfig"]["service"]["namespace"] == ns
    assert webhook["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": ns}}

    version = deployment(kube, ns, "dapr-sentry")["metadata"]["resourceVersion"]  # type: ignore[index]
    again = local_dapr("init", "-k", "-n", ns, *only_here(ns))
    assert again.returncode == 1
    assert "error: cannot re-use a name that is still in use" in again.stderr
    assert f"dapr uninstall -k -n {ns}" in again.stderr
    assert deployment(kube, ns, "dapr-sentry")["metadata"]["resourceVersion"] == version  # type: ignore[index]

    configs, _ = bad_kubeconfigs(kube, ns, ns, tmp_path)
    for what, expected in (
        ("down", "cannot reach the Kubernetes API server"),
        ("no RBAC", f"may not list secrets in namespace '{ns}'"),
    ):
        refused = local_dapr("uninstall", "-k", "-n", ns, env={"KUBECONFIG": str(configs[what][0])})
        assert refused.returncode == 1, (what, refused.output)
        assert refused.stderr.startswith("error: Error removing Dapr: "), refused.stderr
        assert expected in refused.stderr, (what, refused.stderr)
    assert left_over(kube, ns) == list(namespaced_paths(ns))  # nothing was deleted

    gone = dapr("uninstall", "-k", "-n", ns)
    assert gone.returncode == 0, gone.output
    assert gone.stdout.splitlines() == [
        "ℹ️  Removing Dapr from your cluster...",  # noqa: RUF001 - Dapr's emoji
        "✅  Dapr has been removed successfully",
    ]
    assert left_over(kube, ns) == []
    assert releases(helm, ns) == []
    assert kube.request("GET", CRD)[0] == 200  # kept without --all (Helm never deletes crds/)

    none = local_dapr("uninstall", "-k", "-n", ns)
    assert none.returncode == 0, none.output
    assert none.stderr == "⚠  WARNING: dapr release does not exist\n"
    assert none.stdout.splitlines()[-1] == "✅  Dapr has been removed successfully"


def test_init_k_ha_without_mtls_with_own_certificates_then_uninstall_all(
    kube: Testbed, helm: Helm, local_dapr: Dapr, release: str, tmp_path: Path
) -> None:
    from tests.integration.openssl import openssl_recipe

    ns = release
    openssl_recipe(tmp_path)
    certs = {
        name: (tmp_path / name).read_bytes() for name in ("ca.crt", "issuer.crt", "issuer.key")
    }
    done = local_dapr(
        "init",
        "--kubernetes",
        "--namespace",
        ns,
        "--enable-ha",
        "--enable-mtls=false",
        "--runtime-version",
        "1.16.0",
        "--ca-root-certificate",
        str(tmp_path / "ca.crt"),
        "--issuer-private-key",
        str(tmp_path / "issuer.key"),
        "--issuer-public-certificate",
        str(tmp_path / "issuer.crt"),
        *only_here(ns),
    )
    assert done.returncode == 0, done.output
    assert DEPLOYING.format("1.16.0") in done.stdout.splitlines()
    for name in ("dapr-sentry", "dapr-sidecar-injector"):
        assert deployment(kube, ns, name)["spec"]["replicas"] == 3  # type: ignore[index]
    assert container(kube, ns, "dapr-sentry")["image"] == "ghcr.io/pysentry/pysentry:1.16.0"
    config = kube.must("GET", f"/apis/dapr.io/v1alpha1/namespaces/{ns}/configurations/daprsystem")
    assert config["spec"]["mtls"]["enabled"] is False
    assert secret_data(kube, ns) == certs
    cm = kube.must("GET", f"/api/v1/namespaces/{ns}/configmaps/{BUNDLE}")
    assert cm["data"]["ca.crt"].encode() == certs["ca.crt"]

    try:
        gone = local_dapr("uninstall", "-k", "-n", ns, "--all")
        assert gone.returncode == 0, gone.output
        assert left_over(kube, ns) == []
        deadline = time.monotonic() + 30
        while kube.request("GET", CRD)[0] != 404 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert kube.request("GET", CRD)[0] == 404  # --all: the chart's CRD is deleted
    finally:
        apply_dapr_crds(kube)  # the session's other tests need it


def bad_kubeconfigs(
    kube: Testbed, namespace: str, target: str, tmp_path: Path
) -> tuple[dict[str, tuple[Path, str]], str]:
    """Kubeconfigs that cannot install into ``target`` (and the ServiceAccount's token)."""
    garbled = tmp_path / "garbled"
    garbled.write_text("apiVersion: v1\nclusters: [\n")
    down = tmp_path / "down"
    config = json.loads(kube.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    down.write_text(json.dumps(config))
    kube.must(
        "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": "nobody"}}
    )
    token = service_account_token(kube, namespace, "nobody")
    configs = {
        "missing": (tmp_path / "missing", "does not exist; set KUBECONFIG"),
        "garbled": (garbled, "not valid YAML"),
        "down": (down, "cannot reach the Kubernetes API server"),
        "no RBAC": (
            write_kubeconfig(kube, tmp_path / "sa", token),
            f"create deployments.apps in namespace '{target}'",
        ),
    }
    return configs, token


def test_init_k_bad_inputs_install_nothing(
    kube: Testbed, helm: Helm, dapr: Dapr, local_dapr: Dapr, release: str, tmp_path: Path
) -> None:
    from tests.integration.openssl import openssl_recipe

    ns = release
    fresh = f"{ns}-new"  # does not exist: a failed install must not create it
    configs, token = bad_kubeconfigs(kube, ns, fresh, tmp_path)
    for what, (config, expected) in configs.items():
        done = local_dapr("init", "-k", "-n", fresh, env={"KUBECONFIG": str(config)})
        assert done.returncode == 1, (what, done.output)
        assert expected in done.stderr, (what, done.stderr)
        assert token not in done.output, what

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        openssl_recipe(tmp_path / name)
    (tmp_path / "broken.crt").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
    a, b = tmp_path / "a", tmp_path / "b"

    def certs(ca: Path, key: Path, cert: Path) -> list[str]:
        return [
            "--ca-root-certificate",
            str(ca),
            "--issuer-private-key",
            str(key),
            "--issuer-public-certificate",
            str(cert),
        ]

    no_path = {"PATH": "/nonexistent", "DAPR_HELM": ""}
    cases: dict[str, tuple[list[str], dict[str, str], str]] = {
        "broken root": (
            certs(tmp_path / "broken.crt", a / "issuer.key", a / "issuer.crt"),
            {},
            "broken.crt",
        ),
        "mismatched": (
            certs(a / "ca.crt", b / "issuer.key", b / "issuer.crt"),
            {},
            "trust anchors",
        ),
        "some flags": (
            ["--ca-root-certificate", str(a / "ca.crt")],
            {},
            "missing [issuer-private-key issuer-public-certificate]",
        ),
        "blank flag": (
            [*certs(a / "ca.crt", a / "issuer.key", a / "issuer.crt")[:-1], " "],
            {},
            "non empty value of --issuer-public-certificate must be provided",
        ),
        "no helm": ([], no_path, "helm not found on PATH"),
        "bad --set": (["--set", "global.ha.replicaCount[x]=1"], {}, "failed parsing --set data"),
    }
    for what, (args, env, expected) in cases.items():
        done = local_dapr("init", "-k", "-n", fresh, *args, env=env)
        assert done.returncode == 1, (what, done.output)
        assert expected in done.stderr, (what, done.stderr)
        assert "PRIVATE KEY" not in done.output and "BEGIN" not in done.stderr, what

    assert kube.request("GET", f"/api/v1/namespaces/{fresh}")[0] == 404
    assert releases(helm, fresh) == []

    # helm itself fails part-way (here: --wait cannot finish, Pods never run): rolled back.
    done = dapr("init", "-k", "-n", ns, "--wait", "--timeout", "2", *only_here(ns))
    assert done.returncode == 1, done.output
    assert "the partly installed release was removed, nothing was installed" in done.stderr
    assert releases(helm, ns) == []
    assert left_over(kube, ns) == []
    assert kube.request("GET", f"{WEBHOOKS}/dapr-sidecar-injector")[0] == 404


def test_init_k_helm_killed_after_its_timeout_is_rolled_back(
    kube: Testbed,
    helm: Helm,
    local_dapr: Dapr,
    release: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """helm runs past ``--timeout`` + the grace and is killed after the release exists: the
    release is removed, so running the command again cannot fail on "cannot re-use a name"."""
    from pysentry.cli import kubeinstall

    ns = release
    slow = tmp_path / "slow-helm"  # the real helm, then (for install) a hang until killed
    slow.write_text(
        f'#!/bin/sh\n{shlex.quote(str(helm.binary))} "$@" || exit $?\n'
        'if [ "$1" = install ]; then exec sleep 60; fi\n'
    )
    slow.chmod(0o755)
    monkeypatch.setattr(kubeinstall, "INSTALL_GRACE_S", 1)
    started = time.monotonic()
    done = local_dapr(
        "init", "-k", "-n", ns, "--timeout", "4", *only_here(ns), env={"DAPR_HELM": str(slow)}
    )
    assert time.monotonic() - started < 30
    assert done.returncode == 1, done.output
    assert done.stderr.endswith(
        "error: helm install did not finish within 5s; the partly installed release was "
        "removed, nothing was installed\n"
    ), done.stderr
    assert releases(helm, ns) == []
    assert left_over(kube, ns) == []
    assert kube.request("GET", f"{WEBHOOKS}/dapr-sidecar-injector")[0] == 404
