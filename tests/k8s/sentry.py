"""Start ``sentry --mode kubernetes`` against the testbed, as the ``dapr-sentry`` ServiceAccount."""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.sentry.conftest import SentryProcess, free_port
from tests.k8s.cluster import (
    BUNDLE,
    SENTRY_SA,
    service_account_token,
    write_kubeconfig,
)
from tests.k8s.testbed import Testbed

STARTUP_TIMEOUT_S = 30.0
POLL_S = "0.3"


class KubeSentry(SentryProcess):
    """A Sentry whose trust anchors live in the cluster, not in files."""

    kube: Testbed
    namespace: str

    def anchors_pem(self) -> bytes:
        secret = self.kube.must("GET", f"/api/v1/namespaces/{self.namespace}/secrets/{BUNDLE}")
        return base64.b64decode(secret["data"]["ca.crt"])


class KubeLauncher:
    def __init__(self, kube: Testbed, workdir: Path) -> None:
        self.kube = kube
        self.workdir = workdir
        self.started: list[KubeSentry] = []

    def kubeconfig_for(self, namespace: str) -> Path:
        token = service_account_token(self.kube, namespace, SENTRY_SA)
        return write_kubeconfig(self.kube, self.workdir / f"kubeconfig-{namespace}", token)

    def __call__(
        self,
        namespace: str,
        *extra: str,
        kubeconfig: Path | None = None,
        wait: bool = True,
        env: dict[str, str] | None = None,
    ) -> KubeSentry:
        kubeconfig = kubeconfig or self.kubeconfig_for(namespace)
        ports = {"port": free_port(), "healthz_port": free_port(), "metrics_port": free_port()}
        cmd = [
            sys.executable,
            "-m",
            "pysentry.sentry.main",
            "--mode",
            "kubernetes",
            "--kubeconfig",
            str(kubeconfig),
            "--trust-domain",
            "cluster.local",
            "--listen-address",
            "127.0.0.1",
            "--port",
            str(ports["port"]),
            "--healthz-port",
            str(ports["healthz_port"]),
            "--metrics-port",
            str(ports["metrics_port"]),
            *extra,
        ]
        full_env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")
        }
        full_env.update(
            NAMESPACE=namespace,
            PYTHONUNBUFFERED="1",
            PYSENTRY_RELOAD_QUIET_PERIOD="0.2",
            PYSENTRY_TRUST_BUNDLE_POLL=POLL_S,
            DAPR_UNSAFE_SKIP_CONTAINER_UID_GID_CHECK="true",  # the suite runs as root (netns)
        )
        full_env.update(env or {})
        log_path = self.workdir / f"sentry-{len(self.started)}.log"
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=self.workdir
            )
        handle = KubeSentry(proc, self.workdir, log_path, args=tuple(cmd), **ports)
        handle.kube, handle.namespace = self.kube, namespace
        self.started.append(handle)
        if wait:
            wait_healthy(handle)
        return handle

    def stop_all(self) -> None:
        for handle in self.started:
            handle.stop()


def wait_healthy(handle: SentryProcess, timeout: float = STARTUP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if handle.proc.poll() is not None:
            raise AssertionError(
                f"sentry exited with {handle.proc.returncode}:\n{handle.log_text()}"
            )
        with contextlib.suppress(OSError, ValueError):
            status, _ = handle.healthz()
            if status == 200:
                return
        time.sleep(0.05)
    raise AssertionError(f"sentry not healthy after {timeout}s:\n{handle.log_text()}")


def wait_exit(handle: SentryProcess, timeout: float = STARTUP_TIMEOUT_S) -> int:
    try:
        return handle.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"sentry still running after {timeout}s:\n{handle.log_text()}"
        ) from None
