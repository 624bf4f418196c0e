"""``dapr mtls renew-certificate`` (§A.5 paths) and ``dapr mtls drop-old-roots``, run as a user."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from pysentry.cli.console import INFO
from pysentry.pki.bundle import CaBundle
from pysentry.pki.chain import verify_chain
from pysentry.pki.keys import KeyAlgorithm, dump_private_key, generate_key, same_public_key
from pysentry.pki.pem import dump_certificates, load_certificates
from pysentry.spiffe import SpiffeId
from pysentry.testing import TestCA
from tests.integration.cli.conftest import Dapr, snapshot
from tests.integration.openssl import openssl_recipe

SUCCESS = "✅  Certificate rotation is successful! Your new certificate is valid through "


def _bundle(certs: Path) -> CaBundle:
    return CaBundle.from_pem(
        (certs / "ca.crt").read_bytes(),
        (certs / "issuer.crt").read_bytes(),
        (certs / "issuer.key").read_bytes(),
        now=datetime.now(UTC),
    )


def _sec1_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(Encoding.PEM, PrivateFormat.TraditionalOpenSSL, NoEncryption())
    )
    return key


def test_fresh_certificates_into_an_empty_home(dapr: Dapr, certs: Path) -> None:
    result = dapr("mtls", "renew-certificate", "--valid-until", "20")
    assert result.returncode == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "⌛  Starting certificate rotation"
    assert lines[1] == INFO + "generating fresh certificates"
    assert any(line.startswith(SUCCESS) for line in lines)
    assert stat.S_IMODE(certs.stat().st_mode) == 0o700
    for name in ("ca.crt", "issuer.crt", "issuer.key"):
        assert stat.S_IMODE((certs / name).stat().st_mode) == 0o600
    bundle = _bundle(certs)
    root = bundle.trust_anchors[0]
    assert len(bundle.trust_anchors) == 1
    assert abs(root.not_valid_after_utc - (datetime.now(UTC) + timedelta(days=20))) < timedelta(
        minutes=1
    )
    assert root.subject.rfc4514_string() == "O=cluster.local"
    assert (
        bundle.issuer_cert.subject.rfc4514_string()
        == "O=spiffe://cluster.local/ns/default/dapr-sentry"
    )
    date = root.not_valid_after_utc.strftime("%a, %d %b %Y %H:%M:%S UTC")
    assert SUCCESS + date in result.stdout
    # The alias works and the old, unrelated root stays next to the new one.
    again = dapr("mtls", "rnc")
    assert again.returncode == 0, again.output
    assert len(_bundle(certs).trust_anchors) == 2
    assert "dapr mtls drop-old-roots --issuer-credentials" in again.stdout


def test_private_key_keeps_the_root_identity(dapr: Dapr, certs: Path, tmp_path: Path) -> None:
    key_file = tmp_path / "root.key"
    key = _sec1_key(key_file)
    first = dapr("mtls", "renew-certificate", "--private-key", str(key_file), "--valid-until", "10")
    assert first.returncode == 0, first.output
    old = _bundle(certs)
    signed = old.sign(
        generate_key().public_key(),
        SpiffeId.parse("spiffe://cluster.local/ns/default/appA"),
        now=datetime.now(UTC),
    )
    leaf_chain = load_certificates(signed.chain_pem)

    second = dapr("mtls", "renew-certificate", "--private-key", str(key_file), "--restart")
    assert second.returncode == 0, second.output
    assert "The root key is unchanged: running sidecars keep trusting" in second.stdout
    assert "--restart: nothing to restart in self-hosted mode" in second.stdout
    new = _bundle(certs)
    assert len(new.trust_anchors) == 1
    old_root, new_root = old.trust_anchors[0], new.trust_anchors[0]
    assert new_root.subject == old_root.subject
    assert same_public_key(new_root.public_key(), key.public_key())
    assert new_root.serial_number != old_root.serial_number
    assert new_root.not_valid_after_utc > old_root.not_valid_after_utc + timedelta(days=300)
    ski = x509.SubjectKeyIdentifier
    assert new_root.extensions.get_extension_for_class(
        ski
    ) == old_root.extensions.get_extension_for_class(ski)
    now = datetime.now(UTC)
    # A leaf from before the renewal verifies against the new anchors (sidecars keep working)...
    verify_chain(leaf_chain[0], leaf_chain[1:], new.trust_anchors, now=now)
    # ...and the new issuer verifies against the old anchors (sidecars that did not reload yet).
    verify_chain(new.issuer_cert, (), old.trust_anchors, now=now)
    assert not same_public_key(new.issuer_key.public_key(), old.issuer_key.public_key())


def test_new_root_key_keeps_old_root_then_drop(dapr: Dapr, certs: Path) -> None:
    certs.mkdir(parents=True)
    old_ca = TestCA.create("cluster.local")
    old_ca.write_credentials(certs)
    old_leaf, _ = old_ca.issue_svid("spiffe://cluster.local/ns/default/appA")
    result = dapr("mtls", "renew-certificate")
    assert result.returncode == 0, result.output
    assert "The root key changed" in result.stdout
    anchors = load_certificates((certs / "ca.crt").read_bytes())
    assert len(anchors) == 2 and anchors[1] == old_ca.root_cert
    now = datetime.now(UTC)
    verify_chain(old_leaf[0], old_leaf[1:], anchors, now=now)  # old leaves still verify
    assert f"dapr mtls drop-old-roots --issuer-credentials {certs}" in result.stdout

    dropped = dapr("mtls", "drop-old-roots")
    assert dropped.returncode == 0, dropped.output
    assert "Dropped root O=cluster.local" in dropped.stdout
    remaining = load_certificates((certs / "ca.crt").read_bytes())
    assert remaining == anchors[:1]
    nothing = dapr("mtls", "drop-old-roots")
    assert nothing.returncode == 0 and "Nothing to drop" in nothing.stdout


def _renew_with_provided(given: Path) -> tuple[str, ...]:
    """``dapr mtls renew-certificate`` with the three files of ``given``."""
    return (
        "mtls",
        "renew-certificate",
        "--ca-root-certificate",
        str(given / "ca.crt"),
        "--issuer-private-key",
        str(given / "issuer.key"),
        "--issuer-public-certificate",
        str(given / "issuer.crt"),
    )


def test_provided_certificates_are_validated_then_written(
    dapr: Dapr, certs: Path, tmp_path: Path
) -> None:
    given = tmp_path / "given"
    given.mkdir()
    ca = TestCA.create("cluster.local")
    ca.write_credentials(given)
    result = dapr(*_renew_with_provided(given), "--valid-until", "3")
    assert result.returncode == 0, result.output
    assert INFO + "Using provided certificates" in result.stdout
    assert snapshot(certs) == snapshot(given)
    date = ca.root_cert.not_valid_after_utc.strftime("%a, %d %b %Y %H:%M:%S UTC")
    assert SUCCESS + date in result.stdout  # --valid-until is ignored on this path, as in Dapr


@pytest.mark.parametrize("problem", ["mismatched-key", "foreign-issuer", "garbage-root"])
def test_invalid_provided_certificates_change_nothing(
    dapr: Dapr, certs: Path, tmp_path: Path, problem: str
) -> None:
    certs.mkdir(parents=True)
    TestCA.create().write_credentials(certs)
    before = snapshot(certs)
    given = tmp_path / "given"
    given.mkdir()
    ca, other = TestCA.create(), TestCA.create()
    ca.write_credentials(given)
    expected = {
        "mismatched-key": "issuer key does not match issuer certificate",
        "foreign-issuer": "issuer chain does not belong to trust anchors",
        "garbage-root": "ca.crt",
    }[problem]
    if problem == "mismatched-key":
        (given / "issuer.key").write_bytes(other.bundle.issuer_key_pem())
    elif problem == "foreign-issuer":
        (given / "issuer.crt").write_bytes(other.bundle.issuer_chain_pem())
        (given / "issuer.key").write_bytes(other.bundle.issuer_key_pem())
    else:
        (given / "ca.crt").write_bytes(b"hello")
    result = dapr(*_renew_with_provided(given))
    assert result.returncode == 1
    assert result.stderr.startswith("error: certificate rotation failed: "), result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(certs) == before


def test_partial_flags_and_bad_private_key(dapr: Dapr, certs: Path, tmp_path: Path) -> None:
    partial = dapr("mtls", "renew-certificate", "--ca-root-certificate", "ca.crt")
    assert partial.returncode == 1
    assert (
        "certificate rotation failed: all required flags for this certificate rotation path, "
        '"ca-root-certificate", "issuer-private-key" and "issuer-public-certificate" '
        "are not present"
    ) in partial.stderr
    assert not certs.exists()
    blank = dapr("mtls", "renew-certificate", "--private-key", " ")
    assert blank.returncode == 1 and '"privateKey" flag has incorrect value' in blank.stderr
    garbage = tmp_path / "root.key"
    garbage.write_text("not a key")
    bad = dapr("mtls", "renew-certificate", "--private-key", str(garbage))
    assert bad.returncode == 1 and bad.stderr.startswith("error: certificate rotation failed: ")
    assert not certs.exists()
    variant = dapr("mtls", "renew-certificate", "--image-variant", "alpine")
    assert variant.returncode == 1 and "image variant alpine is not supported" in variant.stderr
    k = dapr("mtls", "renew-certificate", "-k", env={"KUBECONFIG": str(tmp_path / "none")})
    assert k.returncode == 1 and "kubeconfig" in k.stderr and "does not exist" in k.stderr
    # A PKCS#8 Ed25519 root key works too (Dapr's CLI only takes SEC1 EC keys).
    ed = tmp_path / "ed.key"
    ed.write_bytes(dump_private_key(generate_key(KeyAlgorithm.ED25519)))
    ok = dapr("mtls", "renew-certificate", "--private-key", str(ed))
    assert ok.returncode == 0, ok.output


def test_private_key_on_the_docs_openssl_root_asks_for_the_trust_domain(
    dapr: Dapr, certs: Path, tmp_path: Path
) -> None:
    """The docs' OpenSSL root has ``O=dapr.io/sentry``, not a trust domain, and no SPIFFE SAN:
    the command refuses, naming ``--trust-domain``, then works with it."""
    certs.mkdir(parents=True)
    openssl_recipe(certs)
    root_key = certs / "root.key"
    before = snapshot(certs)
    refused = dapr("mtls", "renew-certificate", "--private-key", str(root_key))
    assert refused.returncode == 1, refused.output
    assert (
        "cannot tell the trust domain of the root in ca.crt with this key: its subject O "
        "'dapr.io/sentry' is not a trust domain and it has no SPIFFE URI SAN; "
        "give it with --trust-domain" in refused.stderr
    ), refused.stderr
    assert "nothing was changed" in refused.stderr and "Traceback" not in refused.output
    assert snapshot(certs) == before

    done = dapr(
        "mtls", "renew-certificate", "--private-key", str(root_key), "--trust-domain", "example.org"
    )
    assert done.returncode == 0, done.output
    bundle = _bundle(certs)
    assert bundle.trust_anchors[0].subject.rfc4514_string().startswith("CN=cluster.local")
    signed = bundle.sign(
        generate_key().public_key(),
        SpiffeId.parse("spiffe://example.org/ns/default/appA"),
        now=datetime.now(UTC),
    )
    chain = load_certificates(signed.chain_pem)
    verify_chain(chain[0], chain[1:], bundle.trust_anchors, now=datetime.now(UTC))


def test_private_key_takes_the_trust_domain_from_a_spiffe_uri_san(
    dapr: Dapr, certs: Path, tmp_path: Path
) -> None:
    """A root whose subject O is not a trust domain but that names one in a SPIFFE URI SAN."""
    key = generate_key()
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "dapr.io/sentry")])
    root = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier("spiffe://corp.example/ns/dapr-system/dapr-sentry")]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    certs.mkdir(parents=True)
    (certs / "ca.crt").write_bytes(dump_certificates((root,)))
    key_file = tmp_path / "root.key"
    key_file.write_bytes(dump_private_key(key))
    done = dapr("mtls", "renew-certificate", "--private-key", str(key_file))
    assert done.returncode == 0, done.output
    bundle = _bundle(certs)
    assert bundle.trust_anchors[0].subject == name
    issuer_org = bundle.issuer_cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
    assert [a.value for a in issuer_org] == ["spiffe://corp.example/ns/default/dapr-sentry"]
