"""A client signs a CSR over TLS against the real sentry process and checks what it gets back."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from pysentry.pki.keys import KeyAlgorithm, generate_key
from pysentry.pki.pem import is_self_signed, load_certificates
from pysentry.pki.svid import id_from_cert
from pysentry.spiffe import SpiffeId

from .conftest import StartSentry, make_request, openssl_verify, tls_peer

CONFIG = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: daprsystem
spec:
  mtls:
    enabled: true
    workloadCertTTL: "1h"
    allowedClockSkew: "5m"
"""


async def test_sign_over_tls_and_verify_everything(
    start_sentry: StartSentry, tmp_path: Path
) -> None:
    (tmp_path / "config.yaml").write_text(CONFIG)
    sentry = start_sentry(
        "--trust-domain", "cluster.local", "--config", str(tmp_path / "config.yaml")
    )
    anchors_pem = sentry.anchors_pem()
    anchors = load_certificates(anchors_pem)

    # Sentry's own SVID, verified against the anchors with no hostname.
    async with tls_peer(sentry.port, anchors_pem) as ssl_obj:
        assert ssl_obj.selected_alpn_protocol() == "h2"
        der = ssl_obj.getpeercert(binary_form=True)
        assert der is not None
        server_cert = x509.load_der_x509_certificate(der)
    assert str(id_from_cert(server_cert)) == "spiffe://cluster.local/ns/default/dapr-sentry"
    server_ttl = server_cert.not_valid_after_utc - server_cert.not_valid_before_utc
    assert server_ttl == timedelta(hours=1, minutes=5)

    before = datetime.now(UTC).replace(microsecond=0)
    response = await sentry.sign(make_request("myapp", "default", key=generate_key()))
    after = datetime.now(UTC)

    chain = load_certificates(response.workload_certificate)
    assert len(chain) == 2  # leaf + issuer, never the root
    assert not any(is_self_signed(c) for c in chain)
    assert response.workload_certificate.count(b"-----BEGIN CERTIFICATE-----") == 2
    leaf = chain[0]
    assert id_from_cert(leaf) == SpiffeId.parse("spiffe://public/ns/default/myapp")
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert san.value.get_values_for_type(x509.DNSName) == []
    assert leaf.subject == x509.Name([])
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    # workloadCertTTL 1h, backdated by allowedClockSkew 5m
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == timedelta(hours=1, minutes=5)
    assert (
        before - timedelta(minutes=5) <= leaf.not_valid_before_utc <= after - timedelta(minutes=5)
    )
    assert response.valid_until.ToDatetime(tzinfo=UTC) == leaf.not_valid_after_utc
    assert list(response.trust_chain_certificates) == [anchors_pem]
    assert load_certificates(response.trust_chain_certificates[0]) == anchors
    assert "OK" in openssl_verify(tmp_path, anchors_pem, chain)


async def test_trust_domain_and_key_types(start_sentry: StartSentry, tmp_path: Path) -> None:
    sentry = start_sentry("--trust-domain", "cluster.local", "--ca-key-algorithm", "ed25519")
    keys = [generate_key(a) for a in (KeyAlgorithm.EC_P256, KeyAlgorithm.ED25519, KeyAlgorithm.RSA)]
    keys.append(ec.generate_private_key(ec.SECP384R1()))
    for key in keys:
        response = await sentry.sign(
            make_request("app1", "prod", key=key, trust_domain="example.org")
        )
        chain = load_certificates(response.workload_certificate)
        assert str(id_from_cert(chain[0])) == "spiffe://example.org/ns/prod/app1"
        assert "OK" in openssl_verify(tmp_path, sentry.anchors_pem(), chain)
    # default workloadCertTTL 24h and clock skew 15m with no config file
    leaf = chain[0]
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == timedelta(hours=24, minutes=15)
    metrics = sentry.metrics()
    assert "dapr_sentry_cert_sign_request_received_total 4.0" in metrics
    assert "dapr_sentry_cert_sign_success_total 4.0" in metrics


async def test_the_sidecar_sentry_client_accepts_sentry(start_sentry: StartSentry) -> None:
    """daprd's own client (exact Sentry ID check, chain checks) against the real process."""
    from pysentry.pki.csr import build_csr
    from pysentry.security.anchors import StaticAnchors
    from pysentry.security.sentry_client import SentryClient

    sentry = start_sentry("--trust-domain", "cluster.local")
    anchors = StaticAnchors.from_pem(sentry.anchors_pem())
    client = SentryClient(
        f"127.0.0.1:{sentry.port}",
        anchors,
        control_plane_trust_domain="cluster.local",
        control_plane_namespace="default",
    )
    chain = await client.sign(build_csr(generate_key()), app_id="myapp", namespace="default")
    assert str(id_from_cert(chain[0])) == "spiffe://public/ns/default/myapp"
    wrong = SentryClient(
        f"127.0.0.1:{sentry.port}", anchors, control_plane_trust_domain="other.td", attempts=1
    )
    try:
        await wrong.sign(build_csr(generate_key()), app_id="myapp", namespace="default")
    except Exception as err:
        assert "spiffe://cluster.local/ns/default/dapr-sentry" in str(err)
    else:
        raise AssertionError("a client expecting another trust domain accepted Sentry")


async def test_ttl_shorter_than_the_default_skew(start_sentry: StartSentry, tmp_path: Path) -> None:
    # Dapr's docs use workloadCertTTL: 10s-style values for demos while the skew stays 15m.
    # Sentry must start, sign 4s leaves, and renew its own SVID at a sane pace (no renewal loop).
    (tmp_path / "short.yaml").write_text("spec:\n  mtls:\n    workloadCertTTL: 4s\n")
    sentry = start_sentry("--config", str(tmp_path / "short.yaml"), "--log-level", "info")
    before = datetime.now(UTC).replace(microsecond=0)
    response = await sentry.sign(make_request())
    leaf = load_certificates(response.workload_certificate)[0]
    assert timedelta(seconds=3) <= leaf.not_valid_after_utc - before <= timedelta(seconds=6)
    assert before - leaf.not_valid_before_utc >= timedelta(minutes=14)
    sentry.wait_for_log("Successfully renewed workload identity", timeout=10)
    time.sleep(3)
    renewals = sentry.log_text().count("Successfully renewed workload identity")
    assert 1 <= renewals <= 4, sentry.log_text()[-3000:]
