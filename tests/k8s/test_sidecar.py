"""The sidecar side: pysentry ``daprd --mode kubernetes``, run as a local process with a Pod's bound
token file, gets its SVID from Sentry in Kubernetes mode (issue 10 §4)."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

from cryptography import x509

from tests.integration.sentry.conftest import free_port
from tests.k8s.cluster import chart_objects, create_pod, pod_token, sentry_rbac
from tests.k8s.sentry import KubeLauncher, KubeSentry
from tests.k8s.testbed import Testbed

START_TIMEOUT_S = 30.0


def served_svid(port: int) -> x509.Certificate:
    """The certificate daprd's internal gRPC (mTLS) port presents; we send no client cert, so
    daprd refuses us right after the handshake, but its certificate has been seen."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        ctx.wrap_socket(sock) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def run_daprd(
    tmp_path: Path, sentry: KubeSentry, control_plane: str, apps: str, app_id: str, token: str
) -> tuple[subprocess.Popen[bytes], Path, int]:
    token_file = tmp_path / f"token-{app_id}"
    token_file.write_text(token)
    internal = free_port()
    cmd = [
        sys.executable,
        "-m",
        "pysentry.sidecar.main",
        "--mode",
        "kubernetes",
        "--app-id",
        app_id,
        "--enable-mtls",
        "--sentry-address",
        f"127.0.0.1:{sentry.port}",
        "--control-plane-namespace",
        control_plane,
        "--control-plane-trust-domain",
        "cluster.local",
        "--dapr-http-port",
        str(free_port()),
        "--dapr-grpc-port",
        str(free_port()),
        "--dapr-internal-grpc-port",
        str(internal),
        "--metrics-port",
        str(free_port()),
        "--log-level",
        "debug",
    ]
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
        "NAMESPACE": apps,
        "DAPR_TRUST_ANCHORS": sentry.anchors_pem().decode(),
        "DAPR_SENTRY_TOKEN_FILE": str(token_file),
        "DAPR_UNSAFE_SKIP_CONTAINER_UID_GID_CHECK": "true",  # the suite runs as root (netns)
    }
    log = tmp_path / f"daprd-{app_id}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    return proc, log, internal


def wait_log(proc: subprocess.Popen[bytes], log: Path, text: str) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        content = log.read_text(errors="replace")
        if text in content:
            return content
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the daprd log:\n{log.read_text(errors='replace')}")


def test_daprd_with_a_pods_bound_token_gets_its_svid(
    kube: Testbed, namespace: str, kube_sentry: KubeLauncher, tmp_path: Path
) -> None:
    chart_objects(kube, namespace)
    sentry_rbac(kube, namespace)
    sentry = kube_sentry(namespace)
    apps = f"{namespace}-apps"
    kube.must("POST", "/api/v1/namespaces", {"metadata": {"name": apps}})
    create_pod(kube, apps, "web-0", "web", {"dapr.io/app-id": "web"})
    token = pod_token(kube, apps, "web-0", "web", namespace)
    proc, log, internal = run_daprd(tmp_path, sentry, namespace, apps, "web", token)
    try:
        wait_log(proc, log, "Security is initialized successfully")
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                svid = served_svid(internal)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        san = svid.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
            f"spiffe://public/ns/{apps}/web"
        ]
    finally:
        proc.terminate()
        proc.wait(timeout=15)

    # the same token claiming another app ID is refused with Sentry's message
    proc, log, _ = run_daprd(tmp_path, sentry, namespace, apps, "admin", token)
    try:
        wait_log(proc, log, "app-id mismatch. expected: web, received: admin")
    finally:
        proc.terminate()
        proc.wait(timeout=15)
