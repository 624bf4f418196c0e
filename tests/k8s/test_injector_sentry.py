"""The injector with its serving certificate from a real pysentry Sentry in Kubernetes mode
(issue 11 §2): the API server calls it through ``clientConfig.service`` (server name
``dapr-sidecar-injector.<ns>.svc``, verified against the caBundle the injector wrote), a root
rotation moves the caBundle and the certificate with no restart, and a Sentry that is down at
start is waited for. The injector runs with the admin kubeconfig here; the chart's RBAC is
tested in test_injector_chart.py.
"""

from __future__ import annotations

import asyncio
import http.client
import re
import socket
import ssl
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509

from pysentry.pki.pem import load_certificates
from tests.integration.sentry.conftest import free_port
from tests.k8s.cluster import chart_objects, create_pod, sentry_rbac
from tests.k8s.injector import (
    WEBHOOKS,
    InjectorProcess,
    ca_bundle_of,
    containers,
    register,
    route_service,
    sentry_injector,
    wait_active,
    webhook_name,
)
from tests.k8s.kubelet import project_configmap
from tests.k8s.sentry import KubeLauncher
from tests.k8s.test_trust_bundle import configmap_ca, put_secret, secret_items, seed_files, wait_for
from tests.k8s.testbed import Testbed


def served_cert(port: int) -> x509.Certificate:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        ctx.wrap_socket(sock) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def sans(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (
        san.get_values_for_type(x509.UniformResourceIdentifier),
        san.get_values_for_type(x509.DNSName),
    )


def keep_alive(port: int, anchors: bytes, namespace: str) -> http.client.HTTPSConnection:
    """A client that checks the injector as the API server does (anchors + the Service name)."""
    ctx = ssl.create_default_context(cadata=anchors.decode())
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
    conn.sock = ctx.wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=5),
        server_hostname=f"dapr-sidecar-injector.{namespace}.svc",
    )
    return conn


def healthz(conn: http.client.HTTPSConnection) -> int:
    conn.request("GET", "/healthz")
    resp = conn.getresponse()
    resp.read()
    return resp.status


def injected(kube: Testbed, namespace: str, name: str) -> bool:
    pod = create_pod(kube, namespace, name, name, {"dapr.io/enabled": "true"})
    return "daprd" in containers(pod)


def rotate_to(kube: Testbed, injector: InjectorProcess, items: dict[str, bytes]) -> None:
    """``kubectl apply`` of the Secret; Sentry copies ``ca.crt`` to the ConfigMap; the kubelet
    stand-in projects it into the injector's volume; the injector patches its caBundle."""
    ns = injector.namespace
    put_secret(kube, ns, items)
    wait_for(lambda: configmap_ca(kube, ns) == items["ca.crt"].decode(), timeout=20)
    project_configmap(injector.workdir / "tls", {"ca.crt": items["ca.crt"].decode()})
    wait_for(lambda: ca_bundle_of(kube, webhook_name(ns)) == items["ca.crt"], timeout=15)


def test_sentry_certificate_checked_by_the_apiserver_follows_a_root_rotation(
    kube: Testbed, namespace: str, kube_sentry: KubeLauncher, tmp_path: Path
) -> None:
    chart_objects(kube, namespace)
    sentry_rbac(kube, namespace)
    sentry = kube_sentry(namespace)
    wait_for(lambda: bool(configmap_ca(kube, namespace)))
    old = secret_items(kube, namespace)
    injector = sentry_injector(
        kube, namespace, tmp_path / "injector", sentry.port, anchors=old["ca.crt"].decode()
    )
    route_service(kube, namespace, injector.port)
    try:
        register(kube, injector, "Fail", via_service=True, wait=False)
        assert ca_bundle_of(kube, webhook_name(namespace)) is None
        injector.start("--webhook-configuration", webhook_name(namespace))
        assert ca_bundle_of(kube, webhook_name(namespace)) == old["ca.crt"]  # set before listening
        wait_active(kube, namespace)

        cert = served_cert(injector.port)
        assert sans(cert) == (
            [f"spiffe://cluster.local/ns/{namespace}/dapr-injector"],
            [f"dapr-sidecar-injector.{namespace}.svc"],
        )
        assert cert.issuer == load_certificates(old["issuer.crt"])[0].subject
        assert injected(kube, namespace, "web-1")
        conn = keep_alive(injector.port, old["ca.crt"], namespace)
        assert healthz(conn) == 200

        # a new root with a new key: both roots, then the new one alone
        new = seed_files(tmp_path, "new-root")
        new_issuer = load_certificates(new["issuer.crt"])[0].subject
        rotate_to(kube, injector, {**new, "ca.crt": old["ca.crt"] + new["ca.crt"]})
        wait_for(lambda: served_cert(injector.port).issuer == new_issuer, timeout=15)
        assert injected(kube, namespace, "web-2")
        rotate_to(kube, injector, new)
        assert injected(kube, namespace, "web-3")
        assert served_cert(injector.port).issuer == new_issuer
        assert healthz(conn) == 200  # the connection from before the rotation is still served
        assert injector.proc is not None and injector.proc.poll() is None  # never restarted
        log = injector.log()
        assert log.count("Patched the caBundle of MutatingWebhookConfiguration") == 3
        assert "BEGIN CERTIFICATE" not in log and "PRIVATE KEY" not in log
        conn.close()

        # the API server really checks the caBundle: a foreign CA makes every call fail
        body = kube.must("GET", f"{WEBHOOKS}/{webhook_name(namespace)}")
        body["webhooks"][0]["clientConfig"]["caBundle"] = injector.ca_bundle
        kube.must("PUT", f"{WEBHOOKS}/{webhook_name(namespace)}", body)
        wait_for(lambda: not _admits(kube, namespace), timeout=10)
    finally:
        injector.stop()
        kube.request("DELETE", f"{WEBHOOKS}/{webhook_name(namespace)}")


def _admits(kube: Testbed, namespace: str) -> bool:
    probe = {
        "metadata": {"name": "probe", "annotations": {"dapr.io/enabled": "true"}},
        "spec": {"serviceAccountName": "probe", "containers": [{"name": "app", "image": "x"}]},
    }
    status, out = kube.request("POST", f"/api/v1/namespaces/{namespace}/pods?dryRun=All", probe)
    if status != 201:
        assert "x509: certificate signed by unknown authority" in str(out), out
    return status == 201


def test_sentry_down_at_start_is_waited_for_then_the_webhook_serves(
    kube: Testbed, namespace: str, kube_sentry: KubeLauncher, tmp_path: Path
) -> None:
    items = seed_files(tmp_path, "root")  # the user's own certificates (chart --set-file)
    chart_objects(kube, namespace, bundle=items, configmap_ca=items["ca.crt"])
    anchors = items["ca.crt"].decode()
    path = f"/apis/dapr.io/v1alpha1/namespaces/{namespace}/configurations/daprsystem"
    daprsystem = kube.must("GET", path)
    daprsystem["spec"]["mtls"].update(workloadCertTTL="8s", allowedClockSkew="0s")
    kube.must("PUT", path, daprsystem)  # short certificates: renewed within the test
    sentry_rbac(kube, namespace)
    port = free_port()
    injector = sentry_injector(kube, namespace, tmp_path / "injector", port, anchors=None)
    route_service(kube, namespace, injector.port)
    try:
        register(kube, injector, "Fail", via_service=True, wait=False)
        injector.start("--webhook-configuration", webhook_name(namespace), wait=False)
        # no trust anchors file yet (the volume not projected yet): waited for
        injector.wait_log("no trust anchors yet: trust anchors file ")
        project_configmap(injector.workdir / "tls", {"ca.crt": anchors})
        # anchors there, Sentry down: each try names Sentry's address and the cause
        injector.wait_log(
            f"Cannot get the webhook's serving certificate from Sentry at '127.0.0.1:{port}', "
            "trying again in"
        )
        injector.wait_log("connection refused; is sentry running?")
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", injector.port)) != 0  # not listening meanwhile
        kube_sentry(namespace, "--port", str(port))
        injector.wait_listening()
        wait_active(kube, namespace)
        assert injected(kube, namespace, "web-1")
        assert ca_bundle_of(kube, webhook_name(namespace)) == anchors.encode()
        # renewed before expiry (at half the lifetime) and served with no restart
        first_cert = served_cert(injector.port)
        assert first_cert.not_valid_after_utc - first_cert.not_valid_before_utc <= timedelta(
            seconds=8
        )
        wait_for(lambda: served_cert(injector.port).serial_number != first_cert.serial_number)
        assert injected(kube, namespace, "web-2")
        assert "Successfully renewed workload identity" in injector.log()
        assert injector.proc is not None and injector.proc.poll() is None
    finally:
        injector.stop()
        kube.request("DELETE", f"{WEBHOOKS}/{webhook_name(namespace)}")


class _Stop(Exception):
    pass


def test_start_retries_double_up_to_five_seconds_and_name_the_cause(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from pysentry.injector.sentry_tls import SentrySettings, obtain_identity

    delays: list[float] = []

    async def sleep(seconds: float) -> None:  # an injected sleep: no real waiting
        delays.append(seconds)
        if len(delays) == 6:
            raise _Stop

    settings = SentrySettings("127.0.0.1:1", "dapr-system", "cluster.local", tmp_path / "ca.crt")
    with pytest.raises(_Stop):
        asyncio.run(obtain_identity(settings, sleep=sleep))
    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert (
        "Cannot get the webhook's serving certificate from Sentry at '127.0.0.1:1', trying again "
        f"in 0.5s: no trust anchors yet: trust anchors file {str(tmp_path / 'ca.crt')!r} not found"
    ) in caplog.text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tls-cert-file", "x.crt"], "--tls-cert-file given alone: pass both"),
        (["--webhook-ca-file", "ca.crt"], "--webhook-ca-file needs --tls-cert-file"),
        (["--tls-cert-file", "x.crt", "--tls-key-file", "x.key"], "--tls-cert-file 'x.crt': no"),
    ],
)
def test_tls_flag_mistakes_are_refused_naming_the_fix(
    tmp_path: Path, args: list[str], message: str
) -> None:
    from pysentry.errors import ConfigError
    from pysentry.injector.main import check_tls_files, parse_args

    with pytest.raises(ConfigError, match=re.escape(message)):
        check_tls_files(parse_args([*args]))
