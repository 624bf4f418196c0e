"""pysentry.pki.svid: go-spiffe's X.509-SVID checks (§9.6) and the authorizers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from pysentry.errors import PeerRejected
from pysentry.pki.csr import signature_hash
from pysentry.pki.keys import KeyAlgorithm, generate_key
from pysentry.pki.profiles import authority_key_identifier, random_serial
from pysentry.pki.svid import (
    authorize_any,
    authorize_id,
    authorize_path,
    id_from_cert,
    verify_svid,
)
from pysentry.spiffe import SpiffeId
from pysentry.testing import TestCA

NOW = datetime(2026, 6, 1, tzinfo=UTC)
APP = SpiffeId.parse("spiffe://public/ns/default/app")


@pytest.fixture(scope="module", params=[KeyAlgorithm.EC_P256, KeyAlgorithm.ED25519], ids=str)
def ca(request: pytest.FixtureRequest) -> TestCA:
    return TestCA.create("public", algorithm=request.param, now=NOW)


def custom_leaf(
    ca: TestCA,
    *,
    uris: tuple[str, ...] = (str(APP),),
    ca_flag: bool = False,
    cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.Certificate:
    key = generate_key()
    builder = (
        x509.CertificateBuilder()
        .serial_number(random_serial())
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .not_valid_before(NOW - timedelta(hours=1))
        .not_valid_after(NOW + timedelta(hours=1))
        .add_extension(authority_key_identifier(ca.cert), critical=False)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, cert_sign, crl_sign, False, False),
            critical=True,
        )
    )
    if uris:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=False,
        )
    if ca_flag:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    return builder.sign(ca.key, signature_hash(ca.key))


def test_valid_svid(ca: TestCA) -> None:
    chain, _ = ca.issue_svid(APP, now=NOW)
    assert verify_svid(chain, [ca.root_cert], now=NOW) == APP
    assert verify_svid(chain, [ca.root_cert], now=NOW, authorizer=authorize_id(APP)) == APP
    assert verify_svid(chain, [ca.root_cert], now=NOW, authorizer=authorize_any()) == APP


def test_valid_through_child_ca(ca: TestCA) -> None:
    grandchild = ca.child_ca(now=NOW).child_ca(now=NOW)
    chain, _ = grandchild.issue_svid(APP, now=NOW)
    assert len(chain) == 4
    assert verify_svid(chain, [ca.root_cert], now=NOW) == APP


def test_several_anchors(ca: TestCA) -> None:
    other = TestCA.create("other", now=NOW)
    chain, _ = ca.issue_svid(APP, now=NOW)
    assert verify_svid(chain, [other.root_cert, ca.root_cert], now=NOW) == APP


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda ca: (), r"^x509svid: empty certificates chain$"),
        (
            lambda ca: (custom_leaf(ca, uris=()), ca.cert),
            r"^x509svid: could not get leaf SPIFFE ID: certificate contains no URI SAN$",
        ),
        (
            lambda ca: (custom_leaf(ca, uris=(str(APP), "spiffe://public/other")), ca.cert),
            r"^x509svid: could not get leaf SPIFFE ID: certificate contains more than one URI SAN$",
        ),
        (
            lambda ca: (custom_leaf(ca, uris=("https://example.com/x",)), ca.cert),
            r"^x509svid: could not get leaf SPIFFE ID: certificate URI SAN is not a valid SPIFFE",
        ),
        (
            lambda ca: (custom_leaf(ca, ca_flag=True), ca.cert),
            r"^x509svid: leaf certificate with CA flag set to true$",
        ),
        (
            lambda ca: (custom_leaf(ca, cert_sign=True), ca.cert),
            r"^x509svid: leaf certificate with KeyCertSign key usage$",
        ),
        (
            lambda ca: (custom_leaf(ca, crl_sign=True), ca.cert),
            r"^x509svid: leaf certificate with KeyCrlSign key usage$",
        ),
        (
            lambda ca: ca.issue_svid(APP, now=NOW - timedelta(hours=2), ttl=timedelta(hours=1))[0],
            r"^x509svid: could not verify leaf certificate: x509: certificate has expired or is "
            r"not yet valid: current time 2026-06-01T00:00:00Z is after 2026-05-31T23:00:00Z$",
        ),
        (
            lambda ca: ca.issue_svid(APP, now=NOW + timedelta(hours=2))[0],
            r"^x509svid: could not verify leaf certificate: x509: certificate has expired or is "
            r"not yet valid: current time .* is before ",
        ),
        (
            lambda ca: ca.issue_svid(APP, now=NOW)[0][:1],
            r"^x509svid: could not verify leaf certificate: x509: certificate signed by unknown "
            r"authority$",
        ),
        (
            lambda ca: TestCA.create("public", algorithm=ca.algorithm, now=NOW).issue_svid(
                APP, now=NOW
            )[0],
            r"^x509svid: could not verify leaf certificate: x509: certificate signed by unknown "
            r"authority \(possibly because of 'x509: signature verification failure'",
        ),
        (
            lambda ca: ca.child_ca(now=NOW, ttl=timedelta(minutes=1)).issue_svid(
                APP, now=NOW - timedelta(minutes=10), ttl=timedelta(minutes=5)
            )[0],
            r"^x509svid: could not verify leaf certificate: x509: certificate has expired",
        ),
    ],
    ids=[
        "empty-chain",
        "no-uri-san",
        "two-uri-sans",
        "non-spiffe-uri",
        "ca-leaf",
        "leaf-cert-sign",
        "leaf-crl-sign",
        "expired-leaf",
        "not-yet-valid-leaf",
        "missing-intermediate",
        "wrong-root-same-name",
        "child-ca-expired",
    ],
)
def test_rejected(ca: TestCA, make: object, message: str) -> None:
    chain = make(ca)  # type: ignore[operator]
    with pytest.raises(PeerRejected, match=message):
        verify_svid(chain, [ca.root_cert], now=NOW)


def test_expired_intermediate(ca: TestCA) -> None:
    child = ca.child_ca(now=NOW - timedelta(days=2), ttl=timedelta(days=1))
    chain = (custom_leaf(child), *child.chain)  # the leaf itself is still valid
    with pytest.raises(
        PeerRejected,
        match=r"unknown authority \(possibly because of 'x509: certificate has expired",
    ):
        verify_svid(chain, [ca.root_cert], now=NOW)


def test_wrong_root_other_name(ca: TestCA) -> None:
    chain, _ = ca.issue_svid(APP, now=NOW)
    other = TestCA.create("other", now=NOW)
    with pytest.raises(PeerRejected, match=r"certificate signed by unknown authority$"):
        verify_svid(chain, [other.root_cert], now=NOW)


def test_no_anchors(ca: TestCA) -> None:
    chain, _ = ca.issue_svid(APP, now=NOW)
    with pytest.raises(PeerRejected, match=r"^x509svid: could not get X509 bundle"):
        verify_svid(chain, [], now=NOW)


def test_anchor_as_intermediate_is_not_trusted(ca: TestCA) -> None:
    """A chain that carries its own root is verified against the anchors, not itself."""
    rogue = TestCA.create("public", algorithm=ca.algorithm, now=NOW)
    chain, _ = rogue.issue_svid(APP, now=NOW)
    with pytest.raises(PeerRejected, match="unknown authority"):
        verify_svid((*chain, rogue.root_cert), [ca.root_cert], now=NOW)


@pytest.mark.parametrize(
    ("authorizer", "peer", "message"),
    [
        (
            authorize_id(APP),
            "spiffe://public/ns/default/other",
            r"^unexpected SPIFFE ID: 'spiffe://public/ns/default/other' \(expected "
            r"'spiffe://public/ns/default/app'\)$",
        ),
        (
            authorize_id(APP),
            "spiffe://otherdomain/ns/default/app",
            r"^unexpected SPIFFE ID: 'spiffe://otherdomain/ns/default/app'",
        ),
        (
            authorize_path("/ns/default/app"),
            "spiffe://public/ns/prod/app",
            r"^unexpected SPIFFE ID: 'spiffe://public/ns/prod/app'$",
        ),
    ],
    ids=["id-other-app", "id-other-trust-domain", "path-other-namespace"],
)
def test_authorizer_rejects(ca: TestCA, authorizer: object, peer: str, message: str) -> None:
    chain, _ = ca.issue_svid(peer, now=NOW)
    with pytest.raises(PeerRejected, match=message):
        verify_svid(chain, [ca.root_cert], now=NOW, authorizer=authorizer)  # type: ignore[arg-type]


def test_authorize_path_accepts_any_trust_domain() -> None:
    authorize = authorize_path("/ns/default/app")
    authorize(SpiffeId.parse("spiffe://public/ns/default/app"))
    authorize(SpiffeId.parse("spiffe://cluster.local/ns/default/app"))


def test_authorizer_runs_after_chain_verification(ca: TestCA) -> None:
    """An unverifiable chain is reported as such even when the ID is also wrong."""
    chain, _ = TestCA.create("x", now=NOW).issue_svid("spiffe://x/ns/a/b", now=NOW)
    with pytest.raises(PeerRejected, match="could not verify leaf certificate"):
        verify_svid(chain, [ca.root_cert], now=NOW, authorizer=authorize_id(APP))


def test_id_from_cert(ca: TestCA) -> None:
    chain, _ = ca.issue_svid(APP, now=NOW, dns_names=("a.example",))
    assert id_from_cert(chain[0]) == APP
    with pytest.raises(PeerRejected, match=r"^certificate contains no URI SAN$"):
        id_from_cert(ca.cert)
