"""Sentry ``--mode kubernetes`` and the ``dapr-trust-bundle`` Secret/ConfigMap (issue 10 §3, §4)."""

from __future__ import annotations

import asyncio
import base64
import secrets
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509

from pysentry.credentials.kube_store import STAGED_POLLS
from pysentry.pki.pem import load_certificates
from tests.integration.openssl import openssl_recipe
from tests.integration.sentry.conftest import client_context, leaf_and_chain, make_request
from tests.k8s.cluster import BUNDLE, chart_objects, create_pod, pod_token, sentry_rbac
from tests.k8s.sentry import POLL_S, KubeLauncher, KubeSentry, wait_exit, wait_healthy
from tests.k8s.testbed import Testbed


def secret_items(kube: Testbed, namespace: str) -> dict[str, bytes]:
    secret = kube.must("GET", f"/api/v1/namespaces/{namespace}/secrets/{BUNDLE}")
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def configmap_ca(kube: Testbed, namespace: str) -> str | None:
    cm = kube.must("GET", f"/api/v1/namespaces/{namespace}/configmaps/{BUNDLE}")
    return (cm.get("data") or {}).get("ca.crt")


def put_secret(kube: Testbed, namespace: str, items: dict[str, bytes]) -> None:
    path = f"/api/v1/namespaces/{namespace}/secrets/{BUNDLE}"
    secret = kube.must("GET", path)
    secret["data"] = {k: base64.b64encode(v).decode() for k, v in items.items()}
    kube.must("PUT", path, secret)


def seed_files(tmp_path: Path, name: str) -> dict[str, bytes]:
    workdir = tmp_path / name
    workdir.mkdir()
    openssl_recipe(workdir)
    return {n: (workdir / n).read_bytes() for n in ("ca.crt", "issuer.crt", "issuer.key")}


def serves_chain_to(sentry: KubeSentry, anchors_pem: bytes) -> bool:
    """Whether Sentry's serving chain verifies against ``anchors_pem`` (a real TLS handshake)."""
    ctx = client_context(anchors_pem)
    try:
        with (
            socket.create_connection(("127.0.0.1", sentry.port), timeout=5) as sock,
            ctx.wrap_socket(sock),
        ):
            return True
    except ssl.SSLCertVerificationError:
        return False


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_first_start_generates_and_a_restart_reuses(
    kube: Testbed, namespace: str, kube_sentry: KubeLauncher
) -> None:
    chart_objects(kube, namespace)
    sentry_rbac(kube, namespace)
    first = kube_sentry(namespace)
    items = secret_items(kube, namespace)
    assert set(items) == {"ca.crt", "issuer.crt", "issuer.key"}
    assert configmap_ca(kube, namespace) == items["ca.crt"].decode()
    root = load_certificates(items["ca.crt"])[0]
    assert root.subject.rfc4514_string() == "O=cluster.local"
    log = first.log_text()
    assert "Using kubernetes secret store for trust bundle storage" in log
    assert "Root and issuer certs not found: generating self signed CA" in log
    assert first.stop() == 0
    second = kube_sentry(namespace)
    assert secret_items(kube, namespace) == items
    assert "Root and issuer certs found: using credentials from store" in second.log_text()
    assert "generating self signed CA" not in second.log_text()


def test_three_replicas_against_an_empty_secret_end_with_one_root(
    kube: Testbed, namespace: str, kube_sentry: KubeLauncher
) -> None:
    chart_objects(kube, namespace)
    sentry_rbac(kube, namespace)
    kubeconfig = kube_sentry.kubeconfig_for(namespace)
    replicas = [kube_sentry(namespace, kubeconfig=kubeconfig, wait=False) for _ in range(3)]
    for replica in replicas:
        wait_healthy(replica)
    items = secret_items(kube, namespace)
    assert configmap_ca(kube, namespace) == items["ca.crt"].decode()
    assert len(load_certificates(items["ca.crt"])) == 1
    assert all(serves_chain_to(r, items["ca.crt"]) for r in replicas)
    logs = [r.log_text() for r in replicas]
    writers = [t for t in logs if "persisted successfully" in t]
    assert len(writers) == 1, logs


async def sign_as_pod(
    kube: Testbed, control_plane: str, sentry: KubeSentry, anchors: bytes
) -> tuple[x509.Certificate, ...]:
    """A Pod's bound token gets an SVID; returns the leaf and its issuer chain."""
    apps = f"{control_plane}-apps-{secrets.token_hex(3)}"
    kube.must("POST", "/api/v1/namespaces", {"metadata": {"name": apps}})
    create_pod(kube, apps, "web-0", "web", {"dapr.io/app-id": "web"})
    token = pod_token(kube, apps, "web-0", "web", control_plane)
    response = await sentry.sign(make_request("web", apps, token=token), anchors)
    assert [bytes(c) for c in response.trust_chain_certificates] == [anchors]
    return leaf_and_chain(response)


def chains_to(chain: tuple[x509.Certificate, ...], items: dict[str, bytes]) -> bool:
    issuer = load_certificates(items["issuer.crt"])[0]
    root = load_certificates(items["ca.crt"])[0]
    chain[0].verify_directly_issued_by(issuer)
    issuer.verify_directly_issued_by(root)
    return chain[1] == issuer


async def test_your_own_certificates_before_start_then_hot_reload_then_broken(
    kube: Testbed, namespace: str, kube_sentry: KubeLauncher, tmp_path: Path
) -> None:
    first, second = seed_files(tmp_path, "first"), seed_files(tmp_path, "second")
    chart_objects(kube, namespace, bundle=first)  # ConfigMap left empty: Sentry repairs it
    sentry_rbac(kube, namespace)
    sentry = kube_sentry(namespace)
    assert "Root and issuer certs found: using credentials from store" in sentry.log_text()
    assert "repaired it from Secret" in sentry.log_text()
    assert configmap_ca(kube, namespace) == first["ca.crt"].decode()
    assert secret_items(kube, namespace) == first  # never rewritten
    assert chains_to(await sign_as_pod(kube, namespace, sentry, first["ca.crt"]), first)

    put_secret(kube, namespace, second)  # the user's kubectl apply while running
    sentry.wait_for_log("Issuer credentials changed; reloading", timeout=15)
    wait_for(lambda: configmap_ca(kube, namespace) == second["ca.crt"].decode())
    wait_for(lambda: serves_chain_to(sentry, second["ca.crt"]))
    assert chains_to(await sign_as_pod(kube, namespace, sentry, second["ca.crt"]), second)

    broken = {**second, "issuer.key": first["issuer.key"]}  # a key that does not match
    put_secret(kube, namespace, broken)
    sentry.wait_for_log("reload rejected, still serving the previous CA", timeout=15)
    status, body = sentry.healthz()
    assert status == 200
    assert "issuer key does not match" in str(body["detail"])
    assert configmap_ca(kube, namespace) == second["ca.crt"].decode()
    assert chains_to(await sign_as_pod(kube, namespace, sentry, second["ca.crt"]), second)
    assert "dapr_sentry_issuercert_reload_failed_total 1.0" in sentry.metrics()


def test_a_partial_secret_is_a_clear_error(
    kube: Testbed, namespace: str, kube_sentry: KubeLauncher, tmp_path: Path
) -> None:
    seeds = seed_files(tmp_path, "seeds")
    chart_objects(kube, namespace, bundle={"ca.crt": seeds["ca.crt"]})
    sentry_rbac(kube, namespace)
    sentry = kube_sentry(namespace, wait=False)
    assert wait_exit(sentry) == 1
    log = sentry.log_text()
    assert (
        f"incomplete trust bundle: Secret {namespace}/dapr-trust-bundle has 'ca.crt' but no "
        "'issuer.crt', 'issuer.key'"
    ) in log
    assert secret_items(kube, namespace) == {"ca.crt": seeds["ca.crt"]}
    assert "BEGIN" not in log


def test_a_stale_configmap_is_repaired_at_start_and_while_running(
    kube: Testbed, namespace: str, kube_sentry: KubeLauncher, tmp_path: Path
) -> None:
    mine, stale = seed_files(tmp_path, "mine"), seed_files(tmp_path, "stale")
    chart_objects(kube, namespace, bundle=mine, configmap_ca=stale["ca.crt"])
    sentry_rbac(kube, namespace)
    sentry = kube_sentry(namespace)
    assert "had a different ca.crt: repaired it from Secret" in sentry.log_text()
    assert configmap_ca(kube, namespace) == mine["ca.crt"].decode()
    assert secret_items(kube, namespace) == mine  # the user's root is kept: never re-rooted
    path = f"/api/v1/namespaces/{namespace}/configmaps/{BUNDLE}"
    cm = kube.must("GET", path)
    cm["data"]["ca.crt"] = stale["ca.crt"].decode()  # edited by hand while Sentry runs
    kube.must("PUT", path, cm)
    wait_for(lambda: configmap_ca(kube, namespace) == mine["ca.crt"].decode())
    sentry.wait_for_log("did not match the served ca.crt: repaired it")


def test_a_configmap_staging_a_new_root_is_kept_until_the_secret_changes(
    kube: Testbed, namespace: str, kube_sentry: KubeLauncher, tmp_path: Path
) -> None:
    """``renew-certificate -k`` writes the ConfigMap (new + old root) a moment before the Secret:
    a poll in between must not undo it; the Secret's change then sets the ConfigMap exactly."""
    mine, new = seed_files(tmp_path, "mine"), seed_files(tmp_path, "new")
    chart_objects(kube, namespace, bundle=mine)
    sentry_rbac(kube, namespace)
    sentry = kube_sentry(namespace)
    wait_for(lambda: configmap_ca(kube, namespace) == mine["ca.crt"].decode())
    staged = (new["ca.crt"] + mine["ca.crt"]).decode()
    path = f"/api/v1/namespaces/{namespace}/configmaps/{BUNDLE}"
    cm = kube.must("GET", path)
    cm["data"]["ca.crt"] = staged
    kube.must("PUT", path, cm)
    time.sleep(float(POLL_S) * 5)  # several polls: a superset of the served roots stays
    assert configmap_ca(kube, namespace) == staged
    assert "did not match the served ca.crt" not in sentry.log_text()
    put_secret(kube, namespace, {**new, "ca.crt": staged.encode()})
    wait_for(lambda: chains_to_new(sentry, kube, namespace, new))
    assert configmap_ca(kube, namespace) == staged


def test_a_staged_root_the_secret_never_gets_is_dropped_after_the_grace(
    kube: Testbed, namespace: str, kube_sentry: KubeLauncher, tmp_path: Path
) -> None:
    """A renewal that stopped between its two writes (or a hand edit adding a root): the
    sidecars must not trust a root the Secret does not hold for longer than the grace."""
    mine, other = seed_files(tmp_path, "mine"), seed_files(tmp_path, "other")
    chart_objects(kube, namespace, bundle=mine)
    sentry_rbac(kube, namespace)
    sentry = kube_sentry(namespace)
    wait_for(lambda: configmap_ca(kube, namespace) == mine["ca.crt"].decode())
    path = f"/api/v1/namespaces/{namespace}/configmaps/{BUNDLE}"
    cm = kube.must("GET", path)
    cm["data"]["ca.crt"] = (other["ca.crt"] + mine["ca.crt"]).decode()
    kube.must("PUT", path, cm)
    grace = float(POLL_S) * STAGED_POLLS
    wait_for(lambda: configmap_ca(kube, namespace) == mine["ca.crt"].decode(), timeout=grace + 15)
    sentry.wait_for_log(f"trusted roots the Secret does not hold for {STAGED_POLLS} polls")


def chains_to_new(sentry: KubeSentry, kube: Testbed, namespace: str, new: dict[str, bytes]) -> bool:
    try:
        chain = asyncio.run(sign_as_pod(kube, namespace, sentry, sentry.anchors_pem()))
    except (OSError, ssl.SSLError, AssertionError):
        return False  # between the Secret's change and Sentry's reload
    return chain[1] == load_certificates(new["issuer.crt"])[0]


def test_missing_chart_objects_are_a_clear_error(
    kube: Testbed, namespace: str, kube_sentry: KubeLauncher
) -> None:
    chart_objects(kube, namespace)
    for kind in ("secrets", "configmaps"):
        kube.must("DELETE", f"/api/v1/namespaces/{namespace}/{kind}/{BUNDLE}")
    sentry_rbac(kube, namespace)
    sentry = kube_sentry(namespace, wait=False)
    assert wait_exit(sentry) == 1
    assert (
        f"Secret {namespace}/dapr-trust-bundle not found: Sentry only reads and updates it "
        "and never creates it"
    ) in sentry.log_text()
    assert "Root and issuer certs not found" not in sentry.log_text()
