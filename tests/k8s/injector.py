"""A local sidecar-injector process and its webhook registration, for the testbed tests.

The webhook is limited to one namespace (``namespaceSelector``), so no other test's Pods reach
it, and is called on 127.0.0.1 in one of two ways:

- ``clientConfig.url`` (:func:`register` by default), with the injector serving files;
- ``clientConfig.service``, as the chart registers it, with a certificate from Sentry: the API
  server (``--enable-aggregator-routing``) resolves the Service through its EndpointSlices and
  dials the address there with the TLS server name ``dapr-sidecar-injector.<ns>.svc``, which is
  the DNS name Sentry puts into the injector's certificate. No controller writes EndpointSlices
  here, so :func:`route_service` writes the one a controller would, pointing at 127.0.0.1: as
  address type ``FQDN``, since the API server refuses loopback addresses in ``IPv4`` slices.
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

from tests.k8s.cluster import create_pod, pod_token
from tests.k8s.kubelet import project_configmap
from tests.k8s.pki import write_pki
from tests.k8s.testbed import Testbed, free_port


def containers(pod: dict[str, Any]) -> dict[str, Any]:
    return {c["name"]: c for c in pod["spec"]["containers"]}


WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
SERVICE = "dapr-sidecar-injector"
INJECTOR_POD = "dapr-sidecar-injector-0"
IMAGE = "ghcr.io/pysentry/pysentry:0.1.0"
START_TIMEOUT_S = 20.0
ANCHORS = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


class InjectorProcess:
    def __init__(
        self,
        kube: Testbed,
        namespace: str,
        workdir: Path,
        kubeconfig: Path | None = None,
        *,
        sentry_env: dict[str, str] | None = None,
    ) -> None:
        """``sentry_env``: the certificate comes from Sentry (no TLS files), with this env."""
        self.kube, self.namespace, self.workdir = kube, namespace, workdir
        self.kubeconfig = kubeconfig or kube.kubeconfig  # default: the admin
        self.sentry_env = sentry_env
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

    def start(self, *extra: str, wait: bool = True) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        env.update(NAMESPACE=self.namespace, SIDECAR_IMAGE=IMAGE, PYTHONUNBUFFERED="1")
        tls = ["--tls-cert-file", str(self.pki / "serving.crt"),
               "--tls-key-file", str(self.pki / "serving.key")]  # fmt: skip
        if self.sentry_env is not None:
            env.update(self.sentry_env)
            tls = []
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
                    *tls,
                    "--kubeconfig",
                    str(self.kubeconfig),
                    *extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        if wait:
            self.wait_listening()

    def wait_listening(self, timeout: float = START_TIMEOUT_S) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"injector exited {self.proc.returncode}:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"injector not listening after {timeout}s:\n{self.log()}")

    def wait_log(self, text: str, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not logged within {timeout}s:\n{self.log()}")

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


def webhook_name(namespace: str) -> str:
    return f"pysentry-injector-{namespace}"


def register(
    kube: Testbed,
    injector: InjectorProcess,
    failure_policy: str,
    *,
    via_service: bool = False,
    wait: bool = True,
) -> str:
    """The test's MutatingWebhookConfiguration; ``via_service``: the chart's ``clientConfig``
    (the Service, no caBundle: the injector sets it), see :func:`route_service`."""
    name = webhook_name(injector.namespace)
    client: dict[str, Any] = {"url": injector.url, "caBundle": injector.ca_bundle}
    if via_service:
        client = {"service": {"namespace": injector.namespace, "name": SERVICE, "path": "/mutate"}}
    body: dict[str, Any] = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "sidecar-injector.dapr.io",
                "clientConfig": client,
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
    if wait:
        wait_active(kube, injector.namespace)
    return name


def route_service(kube: Testbed, namespace: str, port: int, *, service: bool = True) -> None:
    """The injector's Service (unless the chart made it) and the EndpointSlice a controller
    would write for it, with the address 127.0.0.1 and ``port``."""
    api = f"/api/v1/namespaces/{namespace}"
    if service:
        kube.must(
            "POST",
            f"{api}/services",
            {
                "metadata": {"name": SERVICE},
                "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]},
            },
        )
    kube.must(
        "POST",
        f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{SERVICE}-local",
                "labels": {"kubernetes.io/service-name": SERVICE},
            },
            "addressType": "FQDN",
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        },
    )


def sentry_injector(
    kube: Testbed,
    namespace: str,
    workdir: Path,
    sentry_port: int,
    *,
    anchors: str | None,
    kubeconfig: Path | None = None,
) -> InjectorProcess:
    """An injector that gets its certificate from the Sentry on ``sentry_port``, as the Pod
    ``dapr-sidecar-injector-0`` (``dapr.io/control-plane: injector``, ServiceAccount
    ``dapr-injector``) with its projected token; ``anchors`` is the ``ca.crt`` of its mounted
    trust-bundle volume (None: the ConfigMap is still empty, so the file is absent)."""
    workdir.mkdir(parents=True, exist_ok=True)
    create_pod(
        kube, namespace, INJECTOR_POD, "dapr-injector", {"dapr.io/control-plane": "injector"}
    )
    token = workdir / "sentrytoken" / "token"
    token.parent.mkdir(exist_ok=True)
    token.write_text(pod_token(kube, namespace, INJECTOR_POD, "dapr-injector", namespace))
    bundle = workdir / "tls"
    project_configmap(bundle, {"ca.crt": anchors} if anchors is not None else {})
    env = {
        "SENTRY_ADDRESS": f"127.0.0.1:{sentry_port}",
        "DAPR_TRUST_ANCHORS_FILE": str(bundle / "ca.crt"),
        "DAPR_SENTRY_TOKEN_FILE": str(token),
    }
    return InjectorProcess(kube, namespace, workdir, kubeconfig, sentry_env=env)


def ca_bundle_of(kube: Testbed, name: str) -> bytes | None:
    webhook = kube.must("GET", f"{WEBHOOKS}/{name}")["webhooks"][0]
    value = webhook["clientConfig"].get("caBundle")
    return base64.b64decode(value) if value else None


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
