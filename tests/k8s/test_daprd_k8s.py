"""``daprd --mode kubernetes`` end to end on the testbed (issue 11 §3).

Sentry runs in Kubernetes mode as ``dapr-sentry``; two annotated Pods are created through the
sidecar injector (a real webhook the API server calls); each Pod's injected ``daprd`` is run as a
local process by the kubelet stand-in (tests/k8s/kubelet.py says how it departs from a Pod). App A
calls app B over mTLS, B's Configuration (read from the API server) applies its ACL, and a root
rotation to a new key with the CLI (``dapr mtls renew-certificate -k`` with your own certificates,
then ``dapr mtls drop-old-roots -k``) reaches both sidecars through the mounted ConfigMap file,
with no restart.
"""

from __future__ import annotations

import http.server
import os
import socket
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from pysentry.injector.patch import InjectorConfig, sidecar_container
from pysentry.pki.pem import load_certificates
from tests.integration.sentry.conftest import free_port
from tests.k8s.cluster import (
    BUNDLE,
    chart_objects,
    create_pod,
    pod_token,
    sentry_rbac,
    service_account_token,
    write_kubeconfig,
)
from tests.k8s.injector import WEBHOOKS, InjectorProcess, register
from tests.k8s.kubelet import Sidecar, project_configmap
from tests.k8s.sentry import KubeLauncher
from tests.k8s.test_sidecar import served_svid
from tests.k8s.test_trust_bundle import configmap_ca, secret_items, seed_files, wait_for
from tests.k8s.testbed import Testbed

CONFIGS = "/apis/dapr.io/v1alpha1/namespaces/{ns}/configurations"
TTL = "20s"  # short SVIDs: both sidecars renew onto the new root within the test
RELOADED = "Trust anchors file changed, reloading trust anchors"


class _App(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = f"b got {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def app_b() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _App)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def invoke(sidecar: Sidecar, app: str, method: str, host: str = "127.0.0.1") -> tuple[int, str]:
    url = f"http://{host}:{sidecar.http_port}/v1.0/invoke/{app}/method/{method}"
    req = urllib.request.Request(url, data=b"hi", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def probe_cert(issuer_crt: bytes, issuer_key: bytes, spiffe_id: str) -> tuple[bytes, bytes]:
    """A client SVID signed by ``issuer`` (chain PEM, key PEM) to test what a sidecar trusts."""
    issuer = load_certificates(issuer_crt)[0]
    signer = load_pem_private_key(issuer_key, None)
    assert isinstance(signer, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(  # root and issuer share a subject name: the key ID picks the issuer
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]),
            critical=True,
        )
        .sign(signer, hashes.SHA256())
    )
    chain = leaf.public_bytes(serialization.Encoding.PEM) + issuer.public_bytes(
        serialization.Encoding.PEM
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return chain, key_pem


def accepts(port: int, chain: bytes, key: bytes, workdir: Path) -> bool:
    """Whether daprd's internal gRPC server keeps an HTTP/2 connection from this client SVID
    (it checks the client chain against its anchors when the connection opens, and closes it)."""
    (workdir / "probe.crt").write_bytes(chain)
    (workdir / "probe.key").write_bytes(key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    ctx.load_cert_chain(workdir / "probe.crt", workdir / "probe.key")
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        ctx.wrap_socket(sock) as tls,
    ):
        tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        try:
            return len(tls.recv(9)) == 9  # the server's SETTINGS frame header
        except (ssl.SSLError, ConnectionResetError):
            return False


def svid_issuer(sidecar: Sidecar) -> x509.Name:
    return served_svid(sidecar.internal_port).issuer


def put_config(kube: Testbed, namespace: str, name: str, spec: dict[str, Any]) -> None:
    kube.must(
        "POST",
        CONFIGS.format(ns=namespace),
        {"apiVersion": "dapr.io/v1alpha1", "kind": "Configuration",
         "metadata": {"name": name}, "spec": spec},
    )  # fmt: skip


def config_reader_rbac(kube: Testbed, namespace: str, *accounts: str) -> None:
    """What pysentry's daprd needs to read its ``--config`` (Dapr asks its operator instead)."""
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    kube.must(
        "POST",
        f"{rbac}/roles",
        {
            "metadata": {"name": "dapr-config-reader"},
            "rules": [
                {"apiGroups": ["dapr.io"], "resources": ["configurations"], "verbs": ["get"]}
            ],
        },
    )
    kube.must(
        "POST",
        f"{rbac}/rolebindings",
        {
            "metadata": {"name": "dapr-config-reader"},
            "subjects": [
                {"kind": "ServiceAccount", "name": a, "namespace": namespace} for a in accounts
            ],
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "dapr-config-reader",
            },
        },
    )


def sidecar_for(
    kube: Testbed, namespace: str, pod: dict[str, Any], tmp_path: Path, sentry_port: int, app: int
) -> Sidecar:
    name, sa = pod["metadata"]["name"], pod["spec"]["serviceAccountName"]
    api_token = service_account_token(kube, namespace, sa, pod=name)
    kubeconfig = write_kubeconfig(kube, tmp_path / f"kubeconfig-{name}", api_token)
    token = pod_token(kube, namespace, name, sa, namespace)
    return Sidecar(pod, tmp_path, token, kubeconfig, sentry_port, app)


def only_daprsystem(kube: Testbed, namespace: str) -> None:
    """The CLI works on the cluster's one ``daprsystem`` (found cluster-wide, as Dapr's): remove
    the ones earlier tests left in the session's API server (their Sentries are gone)."""
    for item in kube.must("GET", "/apis/dapr.io/v1alpha1/configurations")["items"]:
        meta = item["metadata"]
        if meta["name"] == "daprsystem" and meta["namespace"] != namespace:
            kube.must("DELETE", f"{CONFIGS.format(ns=meta['namespace'])}/daprsystem")


def dapr_cli(kube: Testbed, tmp_path: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAPR_", "KUBE"))}
    env.update(HOME=str(tmp_path), KUBECONFIG=str(kube.kubeconfig), PYTHONUNBUFFERED="1")
    done = subprocess.run(
        [sys.executable, "-m", "pysentry.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"dapr {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done.stdout


def rotate(
    kube: Testbed, namespace: str, tmp_path: Path, sidecars: list[Sidecar], *args: str
) -> bytes:
    """``dapr mtls ... -k`` writes the Secret and the ConfigMap; the kubelet stand-in projects
    the ConfigMap into each Pod's volume; each daprd reloads its anchors. Returns ``ca.crt``."""
    marks = [len(s.log()) for s in sidecars]
    dapr_cli(kube, tmp_path, "mtls", *args)
    ca = secret_items(kube, namespace)["ca.crt"]
    wait_for(lambda: configmap_ca(kube, namespace) == ca.decode(), timeout=20)
    for sidecar in sidecars:
        project_configmap(sidecar.bundle_dir, {"ca.crt": ca.decode()})
    for sidecar, mark in zip(sidecars, marks, strict=True):
        sidecar.wait_log(RELOADED, timeout=15, after=mark)
    return ca


def test_two_injected_pods_call_over_mtls_and_follow_a_root_rotation(
    kube: Testbed,
    namespace: str,
    kube_sentry: KubeLauncher,
    app_b: int,
    tmp_path: Path,
) -> None:
    chart_objects(kube, namespace)
    path = f"{CONFIGS.format(ns=namespace)}/daprsystem"
    daprsystem = kube.must("GET", path)
    daprsystem["spec"]["mtls"].update(workloadCertTTL=TTL, allowedClockSkew="0s")
    kube.must("PUT", path, daprsystem)
    sentry_rbac(kube, namespace)
    sentry = kube_sentry(namespace)
    wait_for(lambda: bool(configmap_ca(kube, namespace)))
    injector = InjectorProcess(kube, namespace, tmp_path)
    injector.start()
    sidecars: list[Sidecar] = []
    try:
        register(kube, injector, "Fail")
        pods = {}
        for app in ("a", "b"):
            annotations = {
                "dapr.io/enabled": "true",
                "dapr.io/app-id": app,
                "dapr.io/app-port": "8080",
                "dapr.io/config": f"appconfig-{app}",
            }
            create_pod(kube, namespace, f"{app}-0", app, annotations)
            pods[app] = kube.must("GET", f"/api/v1/namespaces/{namespace}/pods/{app}-0")
        injector.stop()
        config_reader_rbac(kube, namespace, "a", "b")
        b = sidecar_for(kube, namespace, pods["b"], tmp_path, sentry.port, app_b)
        a = sidecar_for(kube, namespace, pods["a"], tmp_path, sentry.port, free_port())
        put_config(
            kube,
            namespace,
            "appconfig-a",
            {
                "nameResolution": {
                    "component": "kubernetes",
                    "version": "v1",
                    "configuration": {"template": f"127.0.0.1:{b.internal_port}"},
                }
            },
        )
        put_config(
            kube,
            namespace,
            "appconfig-b",
            {
                "accessControl": {
                    "defaultAction": "deny",
                    "trustDomain": "public",
                    "policies": [
                        {
                            "appId": "a",
                            "defaultAction": "deny",
                            "trustDomain": "public",
                            "namespace": namespace,
                            "operations": [
                                {"name": "/hello", "httpVerb": ["POST"], "action": "allow"}
                            ],
                        }
                    ],
                }
            },
        )
        ca = configmap_ca(kube, namespace)
        assert ca is not None
        env_anchors = {e["name"]: e.get("value") for e in b.container["env"]}
        assert env_anchors["DAPR_TRUST_ANCHORS"] == ca  # what the injector froze into the spec
        sidecars = [b, a]
        for sidecar in sidecars:
            sidecar.start(ca)
        for sidecar in sidecars:
            sidecar.wait_log("dapr initialized. Status: Running")
            assert "Loaded configuration configurations.dapr.io" in sidecar.log()
            san = served_svid(sidecar.internal_port).extensions.get_extension_for_class(
                x509.SubjectAlternativeName
            )
            assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
                f"spiffe://public/ns/{namespace}/{sidecar.name[0]}"
            ]

        # A calls B over mTLS, on both injected listen addresses; B's ACL applies
        assert invoke(a, "b", "hello") == (200, "b got /hello")
        assert invoke(a, "b", "hello", host="[::1]") == (200, "b got /hello")
        status, body = invoke(a, "b", "admin")
        assert status == 403, body
        assert "access control policy has denied access to id: spiffe://public/ns/" in body

        # rotation to a new root with a new key: both roots first, then the new one alone
        old = secret_items(kube, namespace)
        new = seed_files(tmp_path, "new-root")
        old_probe = probe_cert(old["issuer.crt"], old["issuer.key"], "spiffe://public/ns/x/p")
        new_probe = probe_cert(new["issuer.crt"], new["issuer.key"], "spiffe://public/ns/x/p")
        for sidecar in sidecars:
            assert accepts(sidecar.internal_port, *old_probe, tmp_path)
            assert not accepts(sidecar.internal_port, *new_probe, tmp_path)
        # your own certificates, a new root key: dapr mtls renew-certificate -k (path 3)
        only_daprsystem(kube, namespace)
        files = tmp_path / "new-root"
        both = rotate(
            kube,
            namespace,
            tmp_path,
            sidecars,
            "renew-certificate",
            "-k",
            "--ca-root-certificate",
            str(files / "ca.crt"),
            "--issuer-private-key",
            str(files / "issuer.key"),
            "--issuer-public-certificate",
            str(files / "issuer.crt"),
        )
        assert load_certificates(both) == (
            *load_certificates(new["ca.crt"]),
            *load_certificates(old["ca.crt"]),
        )  # the old root is kept until drop-old-roots
        new_issuer = load_certificates(new["issuer.crt"])[0].subject
        for sidecar in sidecars:
            assert accepts(sidecar.internal_port, *new_probe, tmp_path)
            wait_for(_issued_by(sidecar, new_issuer), timeout=40)  # renewed onto the new root
        assert invoke(a, "b", "hello") == (200, "b got /hello")

        assert rotate(kube, namespace, tmp_path, sidecars, "drop-old-roots", "-k") == new["ca.crt"]
        for sidecar in sidecars:
            assert not accepts(sidecar.internal_port, *old_probe, tmp_path)
            assert accepts(sidecar.internal_port, *new_probe, tmp_path)
            assert sidecar.proc is not None and sidecar.proc.poll() is None  # never restarted
        assert invoke(a, "b", "hello") == (200, "b got /hello")
        assert invoke(a, "b", "admin")[0] == 403
        secret = kube.must("GET", f"/api/v1/namespaces/{namespace}/secrets/{BUNDLE}")
        assert secret["data"]  # the rotation went through the cluster's Secret
    finally:
        for sidecar in sidecars:
            sidecar.stop()
        injector.stop()
        kube.request("DELETE", f"{WEBHOOKS}/pysentry-injector-{namespace}")


def _issued_by(sidecar: Sidecar, issuer: x509.Name) -> Callable[[], bool]:
    return lambda: svid_issuer(sidecar) == issuer


def _patched_pod(kube: Testbed, namespace: str, app: str, config: str) -> dict[str, Any]:
    """A Pod created in the cluster, with the daprd container ``injector.patch`` builds (no
    webhook: this test is about daprd's errors, the webhook is tested above)."""
    annotations = {
        "dapr.io/enabled": "true",
        "dapr.io/app-id": app,
        "dapr.io/app-port": "8080",
        "dapr.io/config": config,
    }
    pod = create_pod(kube, namespace, f"{app}-0", app, annotations)
    cfg = InjectorConfig(control_plane_namespace=namespace, trust_domain="cluster.local",
                         sidecar_image="x")  # fmt: skip
    pod["spec"]["containers"].append(sidecar_container(pod, cfg, "unused", mtls=True))
    return pod


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "configurations.dapr.io 'nope' in namespace {ns!r} not found: create it"),
        ("no-rbac", "the API server refused to read it: "),
        ("apiserver-down", "cannot reach the Kubernetes API server at 'https://127.0.0.1:"),
    ],
)
def test_config_errors_are_fatal_and_name_the_fix(
    kube: Testbed, namespace: str, dapr_crds: None, tmp_path: Path, case: str, expected: str
) -> None:
    pod = _patched_pod(kube, namespace, "c", "nope" if case == "missing" else "appconfig")
    if case != "no-rbac":
        config_reader_rbac(kube, namespace, "c")
    if case != "missing":
        put_config(kube, namespace, "appconfig", {})
    sidecar = sidecar_for(kube, namespace, pod, tmp_path, free_port(), free_port())
    if case == "apiserver-down":
        closed = f"https://127.0.0.1:{free_port()}"
        sidecar.kubeconfig.write_text(sidecar.kubeconfig.read_text().replace(kube.url, closed))
    sidecar.start("unused")
    try:
        assert sidecar.wait_exit() == 1
    finally:
        sidecar.stop()
    log = sidecar.log()
    assert expected.format(ns=namespace) in log, log
    if case == "no-rbac":
        assert "grant the Pod's service account 'get' on configurations.dapr.io" in log
        assert f"system:serviceaccount:{namespace}:c" in log  # the API server's own message
    assert "Fatal error from runtime: --config: " in log
