"""``dapr mtls renew-certificate -k`` and ``dapr mtls drop-old-roots -k`` against a real API
server (issue 11 §4): Dapr's three paths, ``--valid-until``, the old root kept until
``drop-old-roots -k``, ``--restart`` and its timeout, a running Sentry that signs with the new
issuer, and bad inputs that write nothing.

The CLI runs as a subprocess with ``KUBECONFIG`` set. It finds the control plane cluster-wide
(the one ``daprsystem``), so this module has its own API server, and every test removes its
``daprsystem`` again (:class:`Plane`).

There is no controller-manager in the testbed, so nothing rolls out a restarted Deployment. In
the ``--restart`` test a small thread stands in for the Deployment and StatefulSet controllers:
when it sees a new ``restartedAt`` in an object's Pod template, it writes the status a finished
rollout has (``observedGeneration`` = ``generation``, every replica updated and ready). Without
it, the timeout test sees the rollout never finish.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from pysentry.cli.console import INFO, rfc1123
from pysentry.pki.bundle import CaBundle
from pysentry.pki.keys import KeyAlgorithm, dump_private_key, generate_key, same_public_key
from pysentry.pki.pem import load_certificates
from pysentry.testing import TestCA
from tests.k8s.build import build_testbed
from tests.k8s.cluster import (
    BUNDLE,
    apply_dapr_crds,
    chart_objects,
    sentry_rbac,
    service_account_token,
    write_kubeconfig,
)
from tests.k8s.conftest import non_loopback_interfaces
from tests.k8s.sentry import KubeLauncher
from tests.k8s.test_trust_bundle import chains_to, sign_as_pod, wait_for
from tests.k8s.testbed import Testbed, free_port, start_testbed

SUCCESS = "✅  Certificate rotation is successful! Your new certificate is valid through "
IMAGE = "ghcr.io/example/pysentry:1.16.0"


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    if non_loopback_interfaces():
        pytest.fail("run the Kubernetes tests with `python -m tests.prebuild`", pytrace=False)
    testbed = start_testbed(build_testbed(), tmp_path_factory.mktemp("cli-renew-bed"))
    try:
        apply_dapr_crds(testbed)
        yield testbed
    finally:
        testbed.stop()


def dapr_all(home: Path, calls: list[tuple[tuple[str, ...], Path]]) -> list[Result]:
    """Run ``dapr`` commands side by side (each is about a second of Python start-up);
    ``calls`` are ``(args, kubeconfig)``."""
    env = {k: v for k, v in os.environ.items() if k not in ("DAPR_HOME", "NAMESPACE")}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1", COLUMNS="200")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "pysentry.cli.main", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, "KUBECONFIG": str(kubeconfig)},
        )
        for args, kubeconfig in calls
    ]
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        results.append(Result(proc.returncode, out, err))
    return results


def dapr_batch(home: Path, calls: list[tuple[tuple[str, ...], Path]]) -> list[Result]:
    """The same, run one after the other in one process (``tests.k8s.clibatch``: one Python
    start-up for all of them)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DAPR_HOME", "NAMESPACE")}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1", COLUMNS="200")
    request = [{"args": list(args), "kubeconfig": str(kc)} for args, kc in calls]
    done = subprocess.run(
        [sys.executable, "-m", "tests.k8s.clibatch"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [Result(r["returncode"], r["stdout"], r["stderr"]) for r in json.loads(done.stdout)]


def secret_data(ca: TestCA) -> dict[str, bytes]:
    bundle = ca.bundle
    return {
        "ca.crt": bundle.anchors_pem(),
        "issuer.crt": bundle.issuer_chain_pem(),
        "issuer.key": bundle.issuer_key_pem(),
    }


def workload(name: str, kind: str) -> dict[str, Any]:
    labels = {"app": name}
    spec: dict[str, Any] = {
        "replicas": 1,
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": name, "image": IMAGE}]},
        },
    }
    if kind == "statefulsets":
        spec["serviceName"] = name
    return {"metadata": {"name": name}, "spec": spec}


class Plane:
    """A control plane in one namespace: the chart's objects; ``daprsystem`` removed at the end."""

    def __init__(self, bed: Testbed, tmp_path: Path) -> None:
        self.bed, self.tmp = bed, tmp_path
        self.ns = f"r-{uuid.uuid4().hex[:8]}"
        self.home = tmp_path / "home"
        self.home.mkdir()
        bed.must("POST", "/api/v1/namespaces", {"metadata": {"name": self.ns}})

    def install(self, bundle: dict[str, bytes] | None = None, *, workloads: bool = True) -> None:
        chart_objects(self.bed, self.ns, bundle=bundle, configmap_ca=(bundle or {}).get("ca.crt"))
        for kind in ("secrets", "configmaps"):  # as Helm labels them: the patch keeps them
            self.bed.must(
                "PATCH",
                f"{self.api}/{kind}/{BUNDLE}",
                {"metadata": {"labels": {"app.kubernetes.io/managed-by": "Helm"}}},
                content_type="application/merge-patch+json",
            )
        if workloads:
            for name in ("dapr-sentry", "dapr-sidecar-injector"):
                self.add_workload("deployments", name)

    def add_workload(self, kind: str, name: str) -> None:
        self.bed.must("POST", f"/apis/apps/v1/namespaces/{self.ns}/{kind}", workload(name, kind))

    @property
    def api(self) -> str:
        return f"/api/v1/namespaces/{self.ns}"

    def remove_system_config(self) -> None:
        path = f"/apis/dapr.io/v1alpha1/namespaces/{self.ns}/configurations/daprsystem"
        status, out = self.bed.request("DELETE", path)
        assert status in (200, 404), out

    def run(self, *args: str, kubeconfig: Path | None = None) -> Result:
        return self.run_all([args], kubeconfig=kubeconfig)[0]

    def run_all(self, calls: list[tuple[str, ...]], kubeconfig: Path | None = None) -> list[Result]:
        return dapr_all(self.home, [(args, kubeconfig or self.bed.kubeconfig) for args in calls])

    def secret(self) -> dict[str, bytes]:
        out = self.bed.must("GET", f"{self.api}/secrets/{BUNDLE}")
        return {k: base64.b64decode(v) for k, v in (out.get("data") or {}).items()}

    def configmap_ca(self) -> bytes:
        out = self.bed.must("GET", f"{self.api}/configmaps/{BUNDLE}")
        return str((out.get("data") or {}).get("ca.crt", "")).encode()

    def versions(self) -> tuple[str, str]:
        """The resourceVersions of the Secret and the ConfigMap (any write changes one)."""
        secret, cm = (
            str(self.bed.must("GET", f"{self.api}/{kind}/{BUNDLE}")["metadata"]["resourceVersion"])
            for kind in ("secrets", "configmaps")
        )
        return secret, cm

    def labels(self, kind: str) -> dict[str, str]:
        out = self.bed.must("GET", f"{self.api}/{kind}/{BUNDLE}")
        return dict(out["metadata"].get("labels") or {})


@pytest.fixture
def plane(bed: Testbed, tmp_path: Path) -> Iterator[Plane]:
    p = Plane(bed, tmp_path)
    try:
        yield p
    finally:
        p.remove_system_config()


def roots(pem: bytes) -> tuple[x509.Certificate, ...]:
    return load_certificates(pem)


def loads(items: dict[str, bytes]) -> CaBundle:
    return CaBundle.from_pem(
        items["ca.crt"], items["issuer.crt"], items["issuer.key"], now=datetime.now(UTC)
    )


def test_fresh_keeps_the_old_root_until_drop_old_roots(plane: Plane) -> None:
    old = TestCA.create("cluster.local")
    plane.install(secret_data(old))
    result = plane.run("mtls", "renew-certificate", "-k", "--valid-until", "20")
    assert result.returncode == 0, result
    new = plane.secret()
    bundle = loads(new)
    root = bundle.trust_anchors[0]
    assert result.lines == [
        "⌛  Starting certificate rotation",
        INFO + "generating fresh certificates",
        INFO + "Updating certifcates in your Kubernetes cluster",
        INFO + f"Dapr control plane version 1.16.0 detected in namespace {plane.ns}",
        SUCCESS + rfc1123(root.not_valid_after_utc),
        *result.lines[5:],
    ]
    assert "The root key changed" in result.stdout
    assert "dapr mtls drop-old-roots -k" in result.stdout
    want = datetime.now(UTC) + timedelta(days=20)
    assert abs(root.not_valid_after_utc - want) < timedelta(minutes=2)
    assert [r.serial_number for r in bundle.trust_anchors] == [
        root.serial_number,
        old.root_cert.serial_number,
    ]
    assert plane.configmap_ca() == new["ca.crt"]
    bundle.issuer_cert.verify_directly_issued_by(root)
    assert b"BEGIN PRIVATE KEY" in new["issuer.key"]
    assert (
        plane.labels("secrets")
        == plane.labels("configmaps")
        == {"app.kubernetes.io/managed-by": "Helm"}
    )

    dropped = plane.run("mtls", "drop-old-roots", "-k")
    assert dropped.returncode == 0, dropped
    assert "Dropped" in dropped.stdout and "✅  ca.crt now holds 1 root(s)" in dropped.stdout
    after = plane.secret()
    assert roots(after["ca.crt"]) == (root,)
    assert plane.configmap_ca() == after["ca.crt"]
    assert {k: after[k] for k in ("issuer.crt", "issuer.key")} == {
        k: new[k] for k in ("issuer.crt", "issuer.key")
    }
    versions = plane.versions()
    again = plane.run("mtls", "drop-old-roots", "-k")
    assert again.returncode == 0, again
    assert (
        INFO + f"Nothing to drop: every root in ca.crt of Secret '{plane.ns}/{BUNDLE}' signs the "
        "current issuer"
    ) in again.stdout
    assert plane.versions() == versions


def test_private_key_reissues_the_same_root(plane: Plane, tmp_path: Path) -> None:
    key_file = tmp_path / "root.key"
    key = ec.generate_private_key(ec.SECP256R1())
    key_file.write_bytes(dump_private_key(key))
    plane.install()  # an empty Secret: Sentry never ran
    first = plane.run("mtls", "renew-certificate", "-k", "--private-key", str(key_file))
    assert first.returncode == 0, first
    assert first.lines[1] == INFO + "Using password file to generate root certificate"
    before = loads(plane.secret()).trust_anchors
    assert len(before) == 1 and same_public_key(before[0].public_key(), key.public_key())
    # allowedClockSkew of daprsystem (15m) backdates the certificates, as Dapr
    assert abs(
        before[0].not_valid_before_utc - (datetime.now(UTC) - timedelta(minutes=15))
    ) < timedelta(minutes=2)
    second = plane.run(
        "mtls", "renew-cert", "-k", "--private-key", str(key_file), "--valid-until", "3"
    )
    assert second.returncode == 0, second
    assert "The root key is unchanged" in second.stdout
    items = plane.secret()
    after = loads(items).trust_anchors
    assert len(after) == 1 and after[0].subject == before[0].subject
    assert same_public_key(after[0].public_key(), key.public_key())
    assert after[0].serial_number != before[0].serial_number
    assert plane.configmap_ca() == items["ca.crt"]


def test_provided_certificates_reach_a_running_sentry(
    bed: Testbed, plane: Plane, tmp_path: Path
) -> None:
    old, mine = TestCA.create("cluster.local"), TestCA.create("cluster.local")
    plane.install(secret_data(old))
    sentry_rbac(bed, plane.ns)
    launcher = KubeLauncher(bed, tmp_path)
    try:
        sentry = launcher(plane.ns)
        files = tmp_path / "mine"
        files.mkdir()
        mine.write_credentials(files)
        result = plane.run(
            "mtls",
            "renew-certificate",
            "-k",
            "--ca-root-certificate",
            str(files / "ca.crt"),
            "--issuer-private-key",
            str(files / "issuer.key"),
            "--issuer-public-certificate",
            str(files / "issuer.crt"),
            "--valid-until",
            "5",  # ignored on this path, as Dapr
        )
        assert result.returncode == 0, result
        assert result.lines[1] == INFO + "Using provided certificates"
        assert SUCCESS + rfc1123(mine.root_cert.not_valid_after_utc) in result.stdout
        items = plane.secret()
        assert items["issuer.crt"] == secret_data(mine)["issuer.crt"]
        assert roots(items["ca.crt"]) == (mine.root_cert, old.root_cert)
        sentry.wait_for_log("Issuer credentials changed; reloading", timeout=15)
        wait_for(lambda: plane.configmap_ca() == items["ca.crt"])
        chain = _sign(bed, plane.ns, sentry, items["ca.crt"])
        assert chains_to(chain, items)  # the leaf is signed by the provided issuer
    finally:
        launcher.stop_all()


def _sign(bed: Testbed, ns: str, sentry: Any, anchors: bytes) -> tuple[x509.Certificate, ...]:
    import asyncio

    return asyncio.run(sign_as_pod(bed, ns, sentry, anchors))


class StandInController:
    """Plays the Deployment/StatefulSet controllers: finishes a rollout once it sees one."""

    def __init__(self, bed: Testbed, ns: str) -> None:
        self.bed, self.ns = bed, ns
        self.stop = threading.Event()
        self.finished: set[str] = set()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> StandInController:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)

    def _loop(self) -> None:
        deadline = 60.0
        while not self.stop.wait(0.1) and deadline > 0:
            deadline -= 0.1
            for kind in ("deployments", "statefulsets"):
                items = self.bed.must("GET", f"/apis/apps/v1/namespaces/{self.ns}/{kind}")
                for obj in items.get("items") or []:
                    self._observe(kind, obj)

    def _observe(self, kind: str, obj: dict[str, Any]) -> None:
        meta, status = obj["metadata"], obj.get("status") or {}
        annotations = obj["spec"]["template"]["metadata"].get("annotations") or {}
        if "kubectl.kubernetes.io/restartedAt" not in annotations:
            return
        if int(status.get("observedGeneration") or 0) >= int(meta["generation"]):
            return
        n = int(obj["spec"].get("replicas", 1))
        obj["status"] = {
            "observedGeneration": meta["generation"],
            "replicas": n,
            "updatedReplicas": n,
            "readyReplicas": n,
            "availableReplicas": n,
        }
        if kind == "statefulsets":
            obj["status"].update(currentReplicas=n, currentRevision="r2", updateRevision="r2")
        path = f"/apis/apps/v1/namespaces/{self.ns}/{kind}/{meta['name']}/status"
        self.bed.must("PUT", path, obj)
        self.finished.add(f"{kind}/{meta['name']}")


def test_restart_rolls_out_the_control_plane(plane: Plane) -> None:
    plane.install(secret_data(TestCA.create("cluster.local")))
    plane.add_workload("statefulsets", "dapr-placement-server")
    with StandInController(plane.bed, plane.ns) as controller:
        result = plane.run("mtls", "renew-certificate", "-k", "--restart", "--timeout", "30")
    assert result.returncode == 0, result
    for name in (
        "deploy/dapr-sentry",
        "deploy/dapr-sidecar-injector",
        "deploy/dapr-operator",
        "statefulsets/dapr-placement-server",
    ):
        assert INFO + f"Restarting {name}.." in result.lines
    assert f"⚠  deploy/dapr-operator does not exist in namespace {plane.ns!r}: skipped" in (
        result.lines
    )
    assert result.lines[-1] == "✅  All control plane services have restarted successfully!"
    assert controller.finished == {
        "deployments/dapr-sentry",
        "deployments/dapr-sidecar-injector",
        "statefulsets/dapr-placement-server",
    }
    deploy = plane.bed.must("GET", f"/apis/apps/v1/namespaces/{plane.ns}/deployments/dapr-sentry")
    stamp = deploy["spec"]["template"]["metadata"]["annotations"][
        "kubectl.kubernetes.io/restartedAt"
    ]
    at = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(at - datetime.now(UTC)) < timedelta(minutes=2)


def test_restart_that_never_finishes_times_out(plane: Plane) -> None:
    """No stand-in: the rollout is never observed, so ``--timeout 2`` ends the wait."""
    plane.install(secret_data(TestCA.create("cluster.local")))
    before = plane.versions()
    result = plane.run("mtls", "renew-certificate", "-k", "--restart", "--timeout", "2")
    assert result.returncode == 1, result
    assert any(line.startswith(SUCCESS) for line in result.lines)  # the renewal itself is done
    assert plane.versions() != before
    assert "All control plane services" not in result.stdout
    assert result.stderr.startswith(
        "error: the certificates were renewed, but restarting the control plane failed:"
    )
    assert (
        "error in checking status for deployment deploy/dapr-sentry. Error is its rollout did "
        "not finish within 2s (--timeout): waiting for the rollout to be observed by its "
        "controller"
    ) in result.stderr


def _freeze_secret(plane: Plane) -> str:
    """A ValidatingAdmissionPolicy that refuses every update of the Secret (RBAC still allows
    it), so the second write fails after the first; returns the binding's path."""
    api = "/apis/admissionregistration.k8s.io/v1"
    name = f"freeze-{plane.ns}"
    plane.bed.must(
        "POST",
        f"{api}/validatingadmissionpolicies",
        {
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["UPDATE"],
                            "resources": ["secrets"],
                        }
                    ]
                },
                "validations": [
                    {"expression": f"object.metadata.name != '{BUNDLE}'", "message": "frozen"}
                ],
            },
        },
    )
    plane.bed.must(
        "POST",
        f"{api}/validatingadmissionpolicybindings",
        {
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": plane.ns}}
                },
            },
        },
    )
    probe = {"metadata": {"annotations": {"probe": "1"}}}
    path = f"{plane.api}/secrets/{BUNDLE}"

    def frozen() -> bool:
        status, _ = plane.bed.request(
            "PATCH", path, probe, content_type="application/merge-patch+json"
        )
        return status >= 400

    wait_for(frozen, timeout=20)
    return f"{api}/validatingadmissionpolicybindings/{name}"


def test_a_refused_secret_write_leaves_a_safe_state(plane: Plane) -> None:
    """The ConfigMap is written first and trusts the old and the new root, so a Secret write
    that fails leaves Sentry's current issuer trusted; the error says so and how to go on."""
    old = TestCA.create("cluster.local")
    plane.install(secret_data(old))
    binding = _freeze_secret(plane)
    secret_before = plane.secret()
    result = plane.run("mtls", "renew-certificate", "-k")
    assert result.returncode == 1, result
    assert plane.secret() == secret_before
    cm_roots = roots(plane.configmap_ca())
    assert len(cm_roots) == 2 and cm_roots[1] == old.root_cert
    ns = plane.ns
    assert result.stderr.startswith(
        f"error: certificate rotation failed: the ConfigMap '{ns}/{BUNDLE}' has the new "
        f"ca.crt, but writing the Secret '{ns}/{BUNDLE}' stopped: "
    ), result.stderr
    assert "frozen" in result.stderr
    assert "That write was refused, so the Secret still holds the previous root" in result.stderr
    assert "Sentry keeps signing as before" in result.stderr
    assert "run the command again" in result.stderr and "to undo, copy" in result.stderr
    assert not any(line.startswith(SUCCESS) for line in result.lines)
    # The undo the message gives, run as printed (kubectl of the testbed's version).
    undo = [line for line in result.stderr.splitlines() if line.startswith("    kubectl ")]
    assert len(undo) == 1, result.stderr
    env = {**os.environ, "KUBECONFIG": str(plane.bed.kubeconfig)}
    env["PATH"] = f"{build_testbed().kubectl.parent}{os.pathsep}{env['PATH']}"
    done = subprocess.run(
        ["bash", "-c", undo[0].strip()],
        cwd=plane.tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert plane.configmap_ca() == secret_before["ca.crt"]
    assert plane.labels("configmaps") == {"app.kubernetes.io/managed-by": "Helm"}

    plane.bed.must("DELETE", binding)
    wait_for(
        lambda: (
            not plane.bed.request(
                "PATCH",
                f"{plane.api}/secrets/{BUNDLE}",
                {"metadata": {"annotations": {"probe": "2"}}},
                content_type="application/merge-patch+json",
            )[0]
            >= 400
        ),
        timeout=20,
    )
    again = plane.run("mtls", "renew-certificate", "-k")
    assert again.returncode == 0, again
    items = plane.secret()
    assert plane.configmap_ca() == items["ca.crt"]
    assert roots(items["ca.crt"])[1:] == (old.root_cert,)  # the first attempt's root is gone


def _reader_kubeconfig(plane: Plane, tmp_path: Path) -> Path:
    """A ServiceAccount that may read everything the command reads and patch the ConfigMap,
    but not the Secret."""
    bed, ns = plane.bed, plane.ns
    bed.must("POST", f"{plane.api}/serviceaccounts", {"metadata": {"name": "reader"}})
    rules = [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "patch"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
        {"apiGroups": ["dapr.io"], "resources": ["configurations"], "verbs": ["list", "get"]},
    ]
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    name = f"reader-{ns}"
    bed.must("POST", f"{rbac}/clusterroles", {"metadata": {"name": name}, "rules": rules})
    bed.must(
        "POST",
        f"{rbac}/clusterrolebindings",
        {
            "metadata": {"name": name},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
        },
    )
    token = service_account_token(bed, ns, "reader")
    return write_kubeconfig(bed, tmp_path / "reader.kubeconfig", token)


def test_bad_inputs_write_nothing(plane: Plane, tmp_path: Path) -> None:
    current, other = TestCA.create("cluster.local"), TestCA.create("cluster.local")
    plane.install(secret_data(current))
    versions = plane.versions()
    good, mixed, expired = tmp_path / "good", tmp_path / "mixed", tmp_path / "expired"
    for directory, ca in (
        (good, other),
        (mixed, other),
        (
            expired,
            TestCA.create(
                "cluster.local", now=datetime.now(UTC) - timedelta(days=9), ttl=timedelta(days=2)
            ),
        ),
    ):
        directory.mkdir()
        ca.write_credentials(directory)
    (mixed / "issuer.key").write_bytes(secret_data(current)["issuer.key"])  # not its key
    (mixed / "other-root.crt").write_bytes(secret_data(current)["ca.crt"])  # not its root
    damaged = tmp_path / "damaged.crt"
    damaged.write_bytes(secret_data(other)["ca.crt"][:-40])
    ed_key, not_pem = tmp_path / "ed.key", tmp_path / "not-pem.key"
    ed_key.write_bytes(dump_private_key(generate_key(KeyAlgorithm.ED25519)))
    not_pem.write_text("not a key\n")

    def provided(directory: Path, **swap: Path) -> tuple[str, ...]:
        files = {
            "--ca-root-certificate": directory / "ca.crt",
            "--issuer-private-key": directory / "issuer.key",
            "--issuer-public-certificate": directory / "issuer.crt",
        }
        files.update({f"--{k.replace('_', '-')}": v for k, v in swap.items()})
        return tuple(x for flag, path in files.items() for x in (flag, str(path)))

    renew = ("mtls", "renew-certificate", "-k")
    cases: list[tuple[tuple[str, ...], str]] = [
        (
            (*renew, "--ca-root-certificate", str(good / "ca.crt")),
            '"ca-root-certificate", "issuer-private-key" and "issuer-public-certificate" are '
            "not present",
        ),
        ((*renew, *provided(good, ca_root_certificate=damaged)), "--ca-root-certificate '"),
        (
            (*renew, *provided(good, ca_root_certificate=tmp_path / "missing.crt")),
            "missing.crt': file does not exist",
        ),
        ((*renew, *provided(mixed)), "issuer key does not match issuer certificate"),
        (
            (*renew, *provided(good, ca_root_certificate=mixed / "other-root.crt")),
            "issuer chain does not belong to trust anchors",
        ),
        ((*renew, *provided(expired)), "expired"),
        ((*renew, "--private-key", str(ed_key)), "the key is Ed25519, not ECDSA"),
        ((*renew, "--private-key", str(not_pem)), "not PEM-encoded"),
        ((*renew, "--image-variant", "mariner"), "found image variant '' is not same as"),
        ((*renew, "--image-variant", "alpine"), "image variant alpine is not supported"),
    ]
    down = tmp_path / "down.kubeconfig"
    write_kubeconfig(plane.bed, down, "t")
    down.write_text(down.read_text().replace(plane.bed.url, f"https://127.0.0.1:{free_port()}"))
    reader = _reader_kubeconfig(plane, tmp_path)
    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections, never answers
    hung = tmp_path / "hung.kubeconfig"
    write_kubeconfig(plane.bed, hung, "t")
    port = silent.getsockname()[1]
    hung.write_text(hung.read_text().replace(plane.bed.url, f"https://127.0.0.1:{port}"))
    calls = [(args, plane.bed.kubeconfig) for args, _ in cases]
    calls += [(renew, reader), (renew, down), (("mtls", "drop-old-roots", "-k"), down)]
    calls += [((*renew, "--timeout", "1"), hung)]
    expects = [expected for _, expected in cases]
    expects += [
        f"may not patch secrets '{BUNDLE}' in namespace '{plane.ns}'",
        "cannot reach the Kubernetes API server",
        "cannot reach the Kubernetes API server",
        "timed out after 1s (--timeout); nothing was changed",
    ]
    with silent:
        results = dapr_batch(plane.home, calls)
    for (args, _), expected, result in zip(calls, expects, results, strict=True):
        assert result.returncode == 1, (args, result)
        assert expected in result.stderr, (args, result.stderr)
        if args[1] == "renew-certificate":
            assert result.stderr.startswith("error: certificate rotation failed: "), result
            assert "nothing was changed" in result.stderr, result.stderr
        assert "BEGIN" not in result.stderr
    assert plane.versions() == versions

    # A damaged ca.crt in the Secret: named, and neither command rewrites it.
    damaged_items = {**secret_data(current), "ca.crt": secret_data(current)["ca.crt"][:-60]}
    secret = plane.bed.must("GET", f"{plane.api}/secrets/{BUNDLE}")
    secret["data"] = {k: base64.b64encode(v).decode() for k, v in damaged_items.items()}
    plane.bed.must("PUT", f"{plane.api}/secrets/{BUNDLE}", secret)
    versions = plane.versions()
    for result in plane.run_all([renew, ("mtls", "drop-old-roots", "-k")]):
        assert result.returncode == 1, result
        assert f"ca.crt of Secret '{plane.ns}/{BUNDLE}': PEM block" in result.stderr, result
    assert plane.versions() == versions

    plane.bed.must("DELETE", f"{plane.api}/secrets/{BUNDLE}")
    result = plane.run(*renew)
    assert result.returncode == 1
    assert f"could not find trust chain secret named {BUNDLE} in namespace {plane.ns}" in (
        result.stderr
    )
    plane.remove_system_config()
    result = plane.run(*renew)
    assert result.returncode == 1 and "system configuration not found" in result.stderr
    cm = plane.bed.must("GET", f"{plane.api}/configmaps/{BUNDLE}")
    assert cm["metadata"]["resourceVersion"] == versions[1]
