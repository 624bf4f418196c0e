"""A local sidecar-injector process and its webhook registration, for the testbed tests.

The webhook is limited to one namespace (``namespaceSelector``) and called on 127.0.0.1
(``clientConfig.url``), so the API server never dials a Service and no other test's Pods reach it.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.k8s.pki import write_pki
from tests.k8s.testbed import Testbed, free_port


def containers(pod: dict[str, Any]) -> dict[str, Any]:
    return {c["name"]: c for c in pod["spec"]["containers"]}


WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
IMAGE = "ghcr.io/pysentry/pysentry:0.1.0"
START_TIMEOUT_S = 20.0
ANCHORS = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


class InjectorProcess:
    def __init__(
        self, kube: Testbed, namespace: str, workdir: Path, kubeconfig: Path | None = None
    ) -> None:
        self.kube, self.namespace, self.workdir = kube, namespace, workdir
        self.kubeconfig = kubeconfig or kube.kubeconfig  # default: the admin
        self.pki = workdir / "webhook-pki"
        write_pki(self.pki)  # a CA and a serving certificate for 127.0.0.1
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/mutate"

    @property
    def ca_bundle(self) -> str:
        return base64.b64encode((self.pki / "ca.crt").read_bytes()).decode()

    def start(self, *extra: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        env.update(NAMESPACE=self.namespace, SIDECAR_IMAGE=IMAGE, PYTHONUNBUFFERED="1")
        with (self.workdir / "injector.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pysentry.injector",
                    "--listen-address",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--tls-cert-file",
                    str(self.pki / "serving.crt"),
                    "--tls-key-file",
                    str(self.pki / "serving.key"),
                    "--kubeconfig",
                    str(self.kubeconfig),
                    *extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"injector exited {self.proc.returncode}:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"injector not listening after {START_TIMEOUT_S}s:\n{self.log()}")

    def log(self) -> str:
        return (self.workdir / "injector.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def register(kube: Testbed, injector: InjectorProcess, failure_policy: str) -> str:
    name = f"pysentry-injector-{injector.namespace}"
    body: dict[str, Any] = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "sidecar-injector.dapr.io",
                "clientConfig": {"url": injector.url, "caBundle": injector.ca_bundle},
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["pods"],
                        "operations": ["CREATE"],
                    }
                ],
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": injector.namespace}
                },
                "failurePolicy": failure_policy,
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 5,
            }
        ],
    }
    status, out = kube.request("GET", f"{WEBHOOKS}/{name}")
    if status == 200:
        body["metadata"]["resourceVersion"] = out["metadata"]["resourceVersion"]
        kube.must("PUT", f"{WEBHOOKS}/{name}", body)
    else:
        kube.must("POST", WEBHOOKS, body)
    wait_active(kube, injector.namespace)
    return name


def wait_active(kube: Testbed, namespace: str, timeout: float = 10.0) -> None:
    """The API server picks webhook configurations up asynchronously: dry-run an annotated Pod
    until the injector answers it (injected, or refused with the injector's message)."""
    kube.request(
        "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": "probe"}}
    )
    probe = {
        "metadata": {"name": "probe", "annotations": {"dapr.io/enabled": "true"}},
        "spec": {"serviceAccountName": "probe", "containers": [{"name": "app", "image": "x"}]},
    }
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, out = kube.request("POST", f"/api/v1/namespaces/{namespace}/pods?dryRun=All", probe)
        if status == 201 and "daprd" in containers(out):
            return
        if status >= 400 and "dapr sidecar injector" in str(out):
            return
        time.sleep(0.05)
    raise AssertionError(
        f"the webhook for {namespace} was not called within {timeout}s: HTTP {status}: {out!r}"
    )
