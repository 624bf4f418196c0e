"""Hot reload through the real process: a new root is picked up without a restart, a corrupt file
keeps the last good CA in service."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from pysentry.pki.pem import load_certificates
from pysentry.pki.svid import id_from_cert
from pysentry.proto.dapr.proto.sentry.v1.sentry_grpc import CAStub
from pysentry.testing import TestCA

from .conftest import StartSentry, close_channel, make_request, openssl_verify, tls_peer


async def test_root_replaced_on_disk_is_picked_up(
    start_sentry: StartSentry, tmp_path: Path
) -> None:
    creds = tmp_path / "certs"
    creds.mkdir(mode=0o700)
    old_ca = TestCA.create("cluster.local")
    old_ca.write_credentials(creds)
    sentry = start_sentry("--trust-domain", "cluster.local", creds=creds)
    old_anchors = old_ca.anchors_pem()
    # A connection opened before the reload must keep working after it.
    persistent = sentry.channel(old_anchors)
    stub = CAStub(persistent)
    before = await stub.SignCertificate(make_request("a"), timeout=10)
    assert before.trust_chain_certificates[0] == old_anchors

    new_ca = TestCA.create("cluster.local")  # a new root with a new key
    new_ca.write_credentials(creds)
    sentry.wait_for_log("Issuer credentials changed; reloading")
    sentry.wait_for_log("CA certificate key pair ready", count=2)

    new_anchors = new_ca.anchors_pem()
    after = await stub.SignCertificate(make_request("b"), timeout=10)  # same connection
    assert after.trust_chain_certificates[0] == new_anchors
    chain = load_certificates(after.workload_certificate)
    assert chain[1] == new_ca.cert
    assert "OK" in openssl_verify(tmp_path, new_anchors, chain)
    # New handshakes get a serving SVID from the new CA: trusting only the new root works.
    async with tls_peer(sentry.port, new_anchors) as ssl_obj:
        der = ssl_obj.getpeercert(binary_form=True)
        assert der is not None
        served = x509.load_der_x509_certificate(der)
    assert served.issuer == new_ca.cert.subject
    assert str(id_from_cert(served)) == "spiffe://cluster.local/ns/default/dapr-sentry"
    fresh = await sentry.sign(make_request("c"), anchors_pem=new_anchors)
    assert load_certificates(fresh.workload_certificate)[1] == new_ca.cert
    await close_channel(persistent)
    assert sentry.proc.poll() is None
    assert "dapr_sentry_issuercert_changed_total" in sentry.metrics()


async def test_corrupt_file_during_reload_keeps_the_old_ca(
    start_sentry: StartSentry, tmp_path: Path
) -> None:
    creds = tmp_path / "certs"
    sentry = start_sentry("--trust-domain", "cluster.local", creds=creds)  # self-generated
    anchors = sentry.anchors_pem()
    issuer_pem = (creds / "issuer.crt").read_bytes()
    (creds / "issuer.crt").write_bytes(b"garbage\n")
    sentry.wait_for_log("Issuer credentials changed; reloading")
    sentry.wait_for_log("Issuer credentials reload rejected, still serving the previous CA")

    response = await sentry.sign(make_request("app"))
    chain = load_certificates(response.workload_certificate)
    assert response.trust_chain_certificates[0] == anchors
    assert chain[1] == load_certificates(issuer_pem)[0]
    assert "OK" in openssl_verify(tmp_path, anchors, chain)
    status, body = sentry.healthz()
    assert status == 200
    detail = body["detail"]
    assert isinstance(detail, dict)
    assert "issuer.crt" in detail["issuer-credentials"]
    assert "dapr_sentry_issuercert_reload_failed_total 1.0" in sentry.metrics()
    assert (creds / "issuer.crt").read_bytes() == b"garbage\n"  # never overwritten

    # Deleting all files is not an invitation to generate a new CA during a reload either.
    for name in ("ca.crt", "issuer.crt", "issuer.key"):
        (creds / name).unlink()
    sentry.wait_for_log("Issuer credentials reload rejected", count=2)
    assert not (creds / "ca.crt").exists()
    response = await sentry.sign(make_request("app"), anchors_pem=anchors)
    assert response.trust_chain_certificates[0] == anchors

    # Restoring valid files clears the health detail.
    TestCA.create("cluster.local").write_credentials(creds)
    sentry.wait_for_log("CA certificate key pair ready", count=2)
    status, body = sentry.healthz()
    assert status == 200 and body["detail"] == {}
