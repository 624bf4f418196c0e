"""Helpers of ``tests/k8s/test_cli_renew.py``: running ``dapr``, one control plane per test,
the stand-in rollout controller, an admission policy that freezes the Secret, a read-only
ServiceAccount.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pysentry.testing import TestCA
from tests.k8s.cluster import BUNDLE, chart_objects, service_account_token, write_kubeconfig
from tests.k8s.test_trust_bundle import wait_for
from tests.k8s.testbed import Testbed

IMAGE = "ghcr.io/example/pysentry:1.16.0"


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


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


def freeze_secret(plane: Plane) -> str:
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


def reader_kubeconfig(plane: Plane, tmp_path: Path) -> Path:
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
