"""Interop with the openssl CLI: the docs' BYO-CA recipe loads; our leaves pass `openssl verify`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from pysentry.pki.bundle import CaBundle
from pysentry.pki.csr import build_csr, parse_csr
from pysentry.pki.keys import KeyAlgorithm, generate_key, load_private_key
from pysentry.pki.pem import load_certificates
from pysentry.pki.svid import verify_svid
from pysentry.spiffe import SpiffeId
from tests.integration.openssl import openssl_recipe, sh

APP = SpiffeId.for_app("public", "default", "myapp")


def load_dir(workdir: Path) -> CaBundle:
    return CaBundle.from_pem(
        (workdir / "ca.crt").read_bytes(),
        (workdir / "issuer.crt").read_bytes(),
        (workdir / "issuer.key").read_bytes(),
        now=datetime.now(UTC),
    )


def sign_leaf(bundle: CaBundle, workdir: Path, csr_algorithm: KeyAlgorithm) -> Path:
    csr = build_csr(generate_key(csr_algorithm))
    signed = bundle.sign(parse_csr(csr), APP, now=datetime.now(UTC))
    leaf = workdir / f"leaf-{csr_algorithm}.crt"
    leaf.write_bytes(signed.leaf.public_bytes(Encoding.PEM))
    chain = load_certificates(signed.chain_pem)
    assert verify_svid(chain, bundle.trust_anchors, now=datetime.now(UTC)) == APP
    return leaf


def openssl_verify(workdir: Path, leaf: Path) -> None:
    for purpose in ("", " -purpose sslclient", " -purpose sslserver"):
        out = sh(
            workdir, f"openssl verify{purpose} -CAfile ca.crt -untrusted issuer.crt {leaf.name}"
        )
        assert out.strip() == f"{leaf.name}: OK"


def test_docs_openssl_recipe_loads(tmp_path: Path) -> None:
    openssl_recipe(tmp_path)
    assert (tmp_path / "issuer.key").read_bytes().startswith(b"-----BEGIN EC PRIVATE KEY-----")
    bundle = load_dir(tmp_path)
    assert bundle.trust_anchors[0].subject.rfc4514_string().startswith("CN=cluster.local,")
    assert bundle.issuer_key_pem().startswith(b"-----BEGIN PRIVATE KEY-----")
    for csr_algorithm in (KeyAlgorithm.EC_P256, KeyAlgorithm.ED25519):
        openssl_verify(tmp_path, sign_leaf(bundle, tmp_path, csr_algorithm))


def test_openssl_detects_key_mismatch_the_same_way(tmp_path: Path) -> None:
    openssl_recipe(tmp_path)
    (tmp_path / "issuer.key").write_bytes((tmp_path / "root.key").read_bytes())
    with pytest.raises(
        ValueError, match=r"issuer\.key: issuer key does not match issuer certificate"
    ):
        load_dir(tmp_path)


@pytest.mark.parametrize("ca_algorithm", [KeyAlgorithm.EC_P256, KeyAlgorithm.ED25519], ids=str)
@pytest.mark.parametrize("csr_algorithm", [KeyAlgorithm.EC_P256, KeyAlgorithm.ED25519], ids=str)
def test_our_leaves_pass_openssl_verify(
    tmp_path: Path, ca_algorithm: KeyAlgorithm, csr_algorithm: KeyAlgorithm
) -> None:
    bundle = CaBundle.generate(
        "public", "dapr-system", now=datetime.now(UTC), algorithm=ca_algorithm
    )
    (tmp_path / "ca.crt").write_bytes(bundle.anchors_pem())
    (tmp_path / "issuer.crt").write_bytes(bundle.issuer_chain_pem())
    leaf = sign_leaf(bundle, tmp_path, csr_algorithm)
    openssl_verify(tmp_path, leaf)
    text = sh(tmp_path, f"openssl x509 -noout -text -in {leaf.name}")
    assert "X509v3 Subject Alternative Name: critical" in text
    assert "URI:spiffe://public/ns/default/myapp" in text
    assert "X509v3 Key Usage: critical" in text
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
    assert "Basic Constraints" not in text
    expected = "ED25519" if ca_algorithm == KeyAlgorithm.ED25519 else "ecdsa-with-SHA256"
    assert f"Signature Algorithm: {expected}" in text


def test_openssl_key_formats_load(tmp_path: Path) -> None:
    """Keys written by `openssl genpkey` (PKCS#8) and `openssl genrsa -traditional` (PKCS#1)."""
    sh(tmp_path, "openssl genpkey -algorithm ed25519 -out ed.key")
    sh(tmp_path, "openssl genrsa -traditional -out rsa.key 2048")
    assert load_private_key((tmp_path / "ed.key").read_bytes())
    assert load_private_key((tmp_path / "rsa.key").read_bytes())
