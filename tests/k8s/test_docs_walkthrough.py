"""The Kubernetes half of Dapr's mTLS docs, command by command, in the docs' order (issue 11).

docs.dapr.io "Setup & configure mTLS certificates" (Kubernetes) and the CLI reference: bring your
own certificates (openssl, then ``helm install --set-file``), view and edit ``daprsystem`` with
``kubectl``, roll the control plane, ``dapr mtls -k``, ``dapr mtls expiry``, ``dapr mtls export``,
``dapr status -k`` and its expiry warning, the three ``dapr mtls renew-certificate -k`` paths with
``--restart``, new certificates through ``kubectl edit secret``, a rollout restart
of an app, ``dapr uninstall -k``, and ``dapr init -k --enable-mtls=false``.

Each command is the docs' text, with ``<DAPR_NAMESPACE>`` filled in and ``dapr/dapr`` (the chart
in Dapr's Helm repository, which needs the internet) replaced by pysentry's chart directory. The
binaries are the ones the suite builds: kubectl v1.34.3, helm v3.19.0, openssl, and
pysentry's ``dapr``. ``kubectl edit`` runs with ``KUBE_EDITOR`` set to a script that makes the edit
the docs describe.

What stands in for what the testbed lacks (no kubelet, no controller-manager, Pods never run):
Sentry runs as a local process with a token of the chart's ``dapr-sentry`` ServiceAccount (so
under the chart's RBAC), and :class:`tests.k8s.rollout.RolloutStandIn` plays the Deployment
controller: when a rollout restart of ``dapr-sentry`` arrives, it restarts that local process and
marks the rollout finished. The chart's webhook is pointed at a closed port on 127.0.0.1 (a test
value): nothing here creates Pods for it to mutate.

The module has its own API server: the CLI finds ``daprsystem`` cluster-wide, and the session's
server holds other tests' objects.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from pysentry.pki.pem import load_certificates
from tests.integration.openssl import openssl_recipe
from tests.k8s.build import build_testbed
from tests.k8s.clirun import STATUS_HEADER, private_testbed
from tests.k8s.cluster import BUNDLE
from tests.k8s.helm import CHART_DIR, Helm, session_helm
from tests.k8s.rollout import RolloutStandIn
from tests.k8s.sentry import KubeLauncher, KubeSentry
from tests.k8s.test_trust_bundle import sign_as_pod
from tests.k8s.testbed import Testbed, free_port

NS = "dapr-system"
COMMAND_TIMEOUT_S = 120
#: kubectl's editor: applies the JSON merge in $EDIT_MERGE to the YAML kubectl opens.
EDITOR = """\
import json, os, sys, yaml
path = sys.argv[1]
with open(path) as f:
    doc = yaml.safe_load(f)
def merge(into, patch):
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value
merge(doc, json.loads(os.environ["EDIT_MERGE"]))
with open(path, "w") as f:
    yaml.safe_dump(doc, f)
"""


@dataclass
class Shell:
    """Runs the docs' command lines with the suite's binaries, in ``cwd``."""

    bed: Testbed
    helm: Helm
    cwd: Path
    binaries: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)
    editor: str = ""

    def run(
        self, line: str, *, merge: dict[str, Any] | None = None, ok: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = shlex.split(line.replace("<DAPR_NAMESPACE>", NS).replace(" dapr/dapr", ""))
        if argv[0] == "helm" and argv[1] == "install":
            argv.append(str(CHART_DIR))
            closed = free_port()  # test value: the webhook never reaches a Service IP
            argv += ["--set", f"dapr_sidecar_injector.webhookURL=https://127.0.0.1:{closed}/x"]
        if argv[0] == "dapr":
            argv = [sys.executable, "-m", "pysentry.cli.main", *argv[1:]]
        else:
            argv[0] = self.binaries.get(argv[0], argv[0])
        env = dict(self.env)
        if merge is not None:
            env.update(KUBE_EDITOR=self.editor, EDIT_MERGE=json.dumps(merge))
        done = subprocess.run(
            argv,
            cwd=self.cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
        if ok:
            assert done.returncode == 0, (
                f"{line!r} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done


bed = private_testbed("docs-bed")


@pytest.fixture
def shell(bed: Testbed, tmp_path: Path) -> Shell:
    helm = session_helm(tmp_path / "helm-home")
    helm = Helm(helm.binary, helm.home, bed.kubeconfig)
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in helm.env().items() if not k.startswith("DAPR_")}
    env.update(
        HOME=str(home),
        KUBECONFIG=str(bed.kubeconfig),
        DAPR_HELM=str(helm.binary),
        PYTHONUNBUFFERED="1",
        COLUMNS="200",
    )
    editor = tmp_path / "editor.py"
    editor.write_text(EDITOR)
    work = tmp_path / "work"
    work.mkdir()
    binaries = {
        "kubectl": str(build_testbed().kubectl),
        "helm": str(helm.binary),
    }
    return Shell(bed, helm, work, binaries, env, f"{sys.executable} {editor}")


@dataclass
class LocalSentry:
    """The ``dapr-sentry`` Deployment's one replica, as a local process."""

    launcher: KubeLauncher
    current: KubeSentry | None = None
    starts: int = 0

    def start(self) -> KubeSentry:
        if self.current is not None:
            self.current.stop()
        self.current = self.launcher(NS)
        self.starts += 1
        return self.current

    def on_rollout(self, kind: str, name: str) -> None:
        if (kind, name) == ("deployments", "dapr-sentry"):
            self.start()

    def sign(self, bed: Testbed) -> tuple[x509.Certificate, ...]:
        import asyncio

        assert self.current is not None
        anchors = secret(bed)["ca.crt"]
        return asyncio.run(sign_as_pod(bed, NS, self.current, anchors))


def secret(bed: Testbed) -> dict[str, bytes]:
    data = bed.must("GET", f"/api/v1/namespaces/{NS}/secrets/{BUNDLE}").get("data") or {}
    return {key: base64.b64decode(value) for key, value in data.items()}


def configmap_ca(bed: Testbed) -> bytes:
    return str(
        bed.must("GET", f"/api/v1/namespaces/{NS}/configmaps/{BUNDLE}")["data"]["ca.crt"]
    ).encode()


def roots(pem: bytes) -> list[x509.Certificate]:
    return list(load_certificates(pem))


def lifetime_left(cert: x509.Certificate) -> timedelta:
    return cert.not_valid_after_utc - datetime.now(UTC)


def test_the_docs_kubernetes_commands_in_order(shell: Shell, bed: Testbed, tmp_path: Path) -> None:
    sh = shell.run
    launcher = KubeLauncher(bed, tmp_path / "sentry")
    (tmp_path / "sentry").mkdir()
    sentry = LocalSentry(launcher)
    try:
        _walk(shell, bed, sentry, sh)
    finally:
        launcher.stop_all()


def _walk(shell: Shell, bed: Testbed, sentry: LocalSentry, sh: Any) -> None:
    work = shell.cwd
    # --- Bringing your own certificates: openssl (the docs' recipe), then helm --set-file.
    openssl_recipe(work)
    for docs_name, ours in (("root.pem", "ca.crt"), ("issuer.pem", "issuer.crt")):
        (work / docs_name).write_bytes((work / ours).read_bytes())
    sh("kubectl create ns dapr-system")
    sh(
        "helm install --set-file dapr_sentry.tls.issuer.certPEM=issuer.pem"
        " --set-file dapr_sentry.tls.issuer.keyPEM=issuer.key"
        " --set-file dapr_sentry.tls.root.certPEM=root.pem --namespace dapr-system dapr dapr/dapr"
    )
    own = {name: (work / name).read_bytes() for name in ("ca.crt", "issuer.crt", "issuer.key")}
    assert secret(bed) == own
    sentry.start()
    leaf, issuer = sentry.sign(bed)[:2]
    assert issuer == x509.load_pem_x509_certificate(own["issuer.crt"])
    assert timedelta(hours=23, minutes=50) < lifetime_left(leaf) <= timedelta(hours=24, minutes=1)

    # --- Setting up mTLS with the configuration resource: view, edit, roll the control plane.
    shown = yaml.safe_load(
        sh("kubectl get configurations/daprsystem --namespace <DAPR_NAMESPACE> -o yaml").stdout
    )
    assert shown["spec"]["mtls"]["enabled"] is True
    assert shown["spec"]["mtls"]["workloadCertTTL"] == "24h"
    sh(
        "kubectl edit configurations/daprsystem --namespace <DAPR_NAMESPACE>",
        merge={"spec": {"mtls": {"workloadCertTTL": "1h"}}},
    )
    with RolloutStandIn(bed, NS, sentry.on_rollout) as controller:
        out = sh("kubectl rollout restart deploy/dapr-sentry -n <DAPR_NAMESPACE>").stdout
        assert out.strip() == "deployment.apps/dapr-sentry restarted"
        sh("kubectl rollout status deploy/dapr-sentry -n <DAPR_NAMESPACE> --timeout 60s")
    assert controller.finished == ["deployments/dapr-sentry"] and sentry.starts == 2
    leaf = sentry.sign(bed)[0]
    assert timedelta(minutes=50) < lifetime_left(leaf) <= timedelta(hours=1, minutes=1)
    # The docs also roll dapr-operator and dapr-placement-server: pysentry's chart has neither.
    missing = sh("kubectl rollout restart deploy/dapr-operator -n <DAPR_NAMESPACE>", ok=False)
    assert (
        missing.returncode == 1 and 'deployments.apps "dapr-operator" not found' in missing.stderr
    )

    # --- The CLI: mTLS status, expiry, export, status.
    assert (
        sh("dapr mtls -k").stdout.splitlines()[0]
        == "Mutual TLS is enabled in your Kubernetes cluster "
    )
    expiry = sh("dapr mtls expiry").stdout
    root = x509.load_pem_x509_certificate(own["ca.crt"])
    hours = int((root.not_valid_after_utc - datetime.now(UTC)).total_seconds() // 3600)
    assert re.fullmatch(
        rf"Root certificate expires in ({hours}|{hours - 1}) hours\. Expiry date: .+ \+0000 UTC\n?",
        expiry,
    )
    out = sh("dapr mtls export -o ./certs").stdout
    exported = work / "certs"
    assert out.strip() == f"✅  Trust certs successfully exported to {exported}"
    assert stat.S_IMODE(exported.stat().st_mode) == 0o700
    for name, content in secret(bed).items():
        assert (exported / name).read_bytes() == content
        assert stat.S_IMODE((exported / name).stat().st_mode) == 0o600
    status = sh("dapr status -k").stdout.splitlines()
    assert status[0].split() == STATUS_HEADER
    assert any(row.split()[:2] == ["dapr-sentry", NS] for row in status[1:])
    assert "⚠" not in "\n".join(status)  # a year left: no warning

    # --- Renew with the CLI, path 1: fresh certificates, --valid-until, --restart.
    with RolloutStandIn(bed, NS, sentry.on_rollout):
        out = sh("dapr mtls renew-certificate -k --valid-until 20 --restart").stdout
    assert "✅  Certificate rotation is successful!" in out
    assert out.rstrip().endswith("✅  All control plane services have restarted successfully!")
    renewed = secret(bed)
    assert roots(renewed["ca.crt"])[1:] == [root]  # the old root stays until drop-old-roots
    assert configmap_ca(bed) == renewed["ca.crt"]
    new_root = roots(renewed["ca.crt"])[0]
    assert timedelta(days=19) < lifetime_left(new_root) <= timedelta(days=20)
    chain = sentry.sign(bed)
    chain[1].verify_directly_issued_by(new_root)
    # Monitoring root certificate validity: the docs' warning, from dapr status -k.
    status_out = sh("dapr status -k").stdout
    assert (
        "⚠  Dapr root certificate of your Kubernetes cluster expires in 19 days. Expiry date: "
        f"{new_root.not_valid_after_utc.strftime('%a, %d %b %Y %H:%M:%S')} UTC. \n"
        " Please see docs.dapr.io for certificate renewal instructions to avoid service"
        " interruptions."
    ) in status_out
    sh("dapr mtls drop-old-roots -k")
    assert roots(secret(bed)["ca.crt"]) == [new_root]
    _wait(lambda: roots(configmap_ca(bed)) == [new_root], "the ConfigMap to drop the old root")

    # --- Path 2: the same root key (the openssl root.key), a new root certificate.
    out = sh("dapr mtls renew-certificate -k --private-key root.key --valid-until 400").stdout
    assert "ℹ️  Using password file to generate root certificate" in out  # noqa: RUF001
    same_key = roots(secret(bed)["ca.crt"])[0]
    assert same_key.public_key().public_numbers() == root.public_key().public_numbers()  # type: ignore[union-attr]

    # --- Path 3: your own certificates (the docs' openssl recipe again, a new root key).
    (work / "mine").mkdir()
    openssl_recipe(work / "mine")
    with RolloutStandIn(bed, NS, sentry.on_rollout):
        out = sh(
            "dapr mtls renew-certificate -k --ca-root-certificate mine/ca.crt"
            " --issuer-private-key mine/issuer.key --issuer-public-certificate mine/issuer.crt"
            " --restart"
        ).stdout
    assert "ℹ️  Using provided certificates" in out  # noqa: RUF001
    mine_root = x509.load_pem_x509_certificate((work / "mine/ca.crt").read_bytes())
    assert roots(secret(bed)["ca.crt"])[0] == mine_root
    assert secret(bed)["issuer.key"] == (work / "mine/issuer.key").read_bytes()
    sentry.sign(bed)[1].verify_directly_issued_by(mine_root)

    # --- Updating root or issuer certs using kubectl: edit the Secret (base64 values).
    fresh = work / "fresh"
    fresh.mkdir()
    openssl_recipe(fresh)
    values = {
        n: base64.b64encode((fresh / n).read_bytes()).decode()
        for n in ("ca.crt", "issuer.crt", "issuer.key")
    }
    sh("kubectl edit secret dapr-trust-bundle -n <DAPR_NAMESPACE>", merge={"data": values})
    fresh_root = x509.load_pem_x509_certificate((fresh / "ca.crt").read_bytes())
    _wait(
        lambda: roots(configmap_ca(bed)) == [fresh_root],
        "the ConfigMap to follow the edited Secret",
    )
    _wait(lambda: _signed_by(sentry, bed, fresh_root), "Sentry to sign with the edited issuer")
    # "If you signed the new cert root with a different private key, restart all Dapr-enabled pods."
    bed.must(
        "POST",
        f"/apis/apps/v1/namespaces/{NS}/deployments",
        _app_deployment("myapp"),
    )
    sh("kubectl rollout restart deploy/myapp -n <DAPR_NAMESPACE>")
    app = bed.must("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/myapp")
    assert "kubectl.kubernetes.io/restartedAt" in app["spec"]["template"]["metadata"]["annotations"]

    # --- Uninstall, then Disabling mTLS with the CLI.
    if sentry.current is not None:
        sentry.current.stop()
        sentry.current = None
    bed.must("DELETE", f"/apis/apps/v1/namespaces/{NS}/deployments/myapp")
    sh("dapr uninstall -k")
    assert sh("dapr mtls -k", ok=False).stderr.strip().endswith("system configuration not found")
    sh("dapr init --kubernetes --enable-mtls=false")
    assert (
        sh("dapr mtls -k").stdout.splitlines()[0]
        == "Mutual TLS is disabled in your Kubernetes cluster "
    )
    sh("dapr uninstall -k")


def _signed_by(sentry: LocalSentry, bed: Testbed, root: x509.Certificate) -> bool:
    try:
        sentry.sign(bed)[1].verify_directly_issued_by(root)
    except Exception:
        return False
    return True


def _wait(predicate: Any, what: str, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _app_deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {"dapr.io/enabled": "true", "dapr.io/app-id": name},
                },
                "spec": {"containers": [{"name": "app", "image": "example/app:1"}]},
            },
        },
    }
