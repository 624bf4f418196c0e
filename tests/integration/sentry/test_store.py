"""The file store through the real process: generate once, reuse, load the docs' openssl certs,
refuse partial or corrupt credentials (never overwrite a user's CA)."""

from __future__ import annotations

import stat
from pathlib import Path

from pysentry.pki.pem import load_certificates
from pysentry.pki.svid import id_from_cert
from tests.integration.openssl import openssl_recipe

from .conftest import StartSentry, make_request, openssl_verify, run_sentry_to_exit


def docs_credentials(workdir: Path) -> Path:
    """The docs' openssl recipe run in ``workdir``; a directory with only its three files."""
    openssl_recipe(workdir)
    creds = workdir / "certs"
    creds.mkdir()
    for name in ("ca.crt", "issuer.crt", "issuer.key"):
        (creds / name).write_bytes((workdir / name).read_bytes())
    return creds


async def test_first_start_generates_then_second_start_reuses(
    start_sentry: StartSentry, tmp_path: Path
) -> None:
    creds = tmp_path / "certs"  # does not exist yet: created 0700
    first = start_sentry("--trust-domain", "cluster.local", creds=creds)
    log = first.log_text()
    assert "Root and issuer certs not found: generating self signed CA" in log
    assert "Generating self-signed CA certs and persisting to store" in log
    assert "Self-signed certs and JWT root key generated and persisted successfully" in log
    assert stat.S_IMODE(creds.stat().st_mode) == 0o700
    for name in ("ca.crt", "issuer.crt", "issuer.key"):
        assert stat.S_IMODE((creds / name).stat().st_mode) == 0o600, name
    assert b"-----BEGIN PRIVATE KEY-----" in (creds / "issuer.key").read_bytes()
    root_pem = first.anchors_pem()
    response = await first.sign(make_request())
    assert response.trust_chain_certificates[0] == root_pem
    assert first.stop() == 0
    assert "Sentry shut down gracefully" in first.log_text()

    second = start_sentry("--trust-domain", "cluster.local", creds=creds)
    assert "Root and issuer certs found: using credentials from store" in second.log_text()
    assert "generating self signed CA" not in second.log_text()
    assert second.anchors_pem() == root_pem
    response = await second.sign(make_request(), anchors_pem=root_pem)
    assert response.trust_chain_certificates[0] == root_pem
    assert "OK" in openssl_verify(
        tmp_path, root_pem, load_certificates(response.workload_certificate)
    )


async def test_docs_openssl_recipe_certs_load(start_sentry: StartSentry, tmp_path: Path) -> None:
    creds = docs_credentials(tmp_path)
    before = {p.name: p.read_bytes() for p in creds.iterdir()}
    sentry = start_sentry("--trust-domain", "cluster.local", creds=creds)
    assert "Root and issuer certs found: using credentials from store" in sentry.log_text()
    response = await sentry.sign(make_request("app", "ns1"))
    chain = load_certificates(response.workload_certificate)
    assert str(id_from_cert(chain[0])) == "spiffe://public/ns/ns1/app"
    assert "OK" in openssl_verify(tmp_path, before["ca.crt"], chain)
    assert {p.name: p.read_bytes() for p in creds.iterdir()} == before  # never rewritten


def test_partial_credentials_are_refused(tmp_path: Path) -> None:
    creds = docs_credentials(tmp_path)
    (creds / "issuer.key").unlink()
    before = {p.name: p.read_bytes() for p in creds.iterdir()}
    code, output = run_sentry_to_exit(creds)
    assert code == 1
    assert "incomplete issuer credentials" in output
    assert repr(str(creds / "issuer.key")) in output
    assert "remove all three files" in output
    assert "generating self signed CA" not in output
    assert {p.name: p.read_bytes() for p in creds.iterdir()} == before


def test_corrupt_credentials_at_start_exit_with_the_reason(tmp_path: Path) -> None:
    creds = docs_credentials(tmp_path)
    (creds / "issuer.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64 !!\n")
    code, output = run_sentry_to_exit(creds)
    assert code == 1
    assert "failed to verify CA bundle" in output
    assert "issuer.crt" in output
    assert (creds / "issuer.crt").read_bytes().startswith(b"-----BEGIN CERTIFICATE-----\nnot")


def test_mismatched_key_at_start_exits(tmp_path: Path) -> None:
    creds = docs_credentials(tmp_path)
    (creds / "issuer.key").write_bytes((tmp_path / "root.key").read_bytes())
    code, output = run_sentry_to_exit(creds)
    assert code == 1
    assert "issuer key does not match issuer certificate" in output


def test_config_errors(tmp_path: Path) -> None:
    code, output = run_sentry_to_exit(tmp_path / "certs", "--config", str(tmp_path / "nope.yaml"))
    assert code == 1
    assert "nope.yaml" in output and "not found" in output
    (tmp_path / "bad.yaml").write_text("spec:\n  mtls:\n    workloadCertTTL: 1d\n")
    code, output = run_sentry_to_exit(tmp_path / "certs", "--config", str(tmp_path / "bad.yaml"))
    assert code == 1
    assert "WorkloadCertTTL" in output
    code, output = run_sentry_to_exit(tmp_path / "certs", "--mode", "bogus")
    assert code == 1
    assert "invalid mode: bogus" in output
    assert not (tmp_path / "certs").exists()
