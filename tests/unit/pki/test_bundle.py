"""pysentry.pki.bundle: CaBundle.generate and every loading rule/message of spec §5.2."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import ExtendedKeyUsageOID

from pysentry.errors import InvalidBundle
from pysentry.pki.bundle import CaBundle
from pysentry.pki.keys import KeyAlgorithm, dump_private_key, generate_key
from pysentry.pki.pem import encode_pem, load_certificates
from pysentry.pki.svid import verify_svid
from pysentry.spiffe import SpiffeId, TrustDomain
from pysentry.testing import TestCA
from tests.unit.pki.factory import NOW, make_cert, unknown_key_algorithm

DATA = Path(__file__).parents[2] / "data" / "pki"
APP = SpiffeId.for_app("public", "default", "app")


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(Encoding.PEM) for c in certs)


class Creds:
    """A step-shaped root (pathlen 1) and intermediate (pathlen 0) with their keys."""

    def __init__(self, algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256) -> None:
        self.root_key = generate_key(algorithm)
        self.root = make_cert("Example Root CA", self.root_key, pathlen=1)
        self.issuer_key = generate_key(algorithm)
        self.issuer = make_cert(
            "Example Intermediate CA", self.issuer_key, (self.root, self.root_key), pathlen=0
        )

    def load(
        self,
        ca: bytes | None = None,
        issuer: bytes | None = None,
        key: bytes | None = None,
        now: datetime = NOW,
    ) -> CaBundle:
        return CaBundle.from_pem(
            _pem(self.root) if ca is None else ca,
            _pem(self.issuer) if issuer is None else issuer,
            dump_private_key(self.issuer_key) if key is None else key,
            now=now,
        )


@pytest.fixture(scope="module")
def creds() -> Creds:
    return Creds()


@pytest.mark.parametrize("algorithm", list(KeyAlgorithm), ids=str)
def test_step_shaped_credentials_load_and_sign(algorithm: KeyAlgorithm) -> None:
    creds = Creds(algorithm)
    bundle = creds.load()
    assert bundle.trust_anchors == (creds.root,)
    assert bundle.issuer_chain == (creds.issuer,)
    signed = bundle.sign(generate_key().public_key(), APP, now=NOW)
    chain = load_certificates(signed.chain_pem)
    assert chain == (signed.leaf, creds.issuer)
    assert verify_svid(chain, bundle.trust_anchors, now=NOW) == APP


def test_sec1_key_and_comments_are_reencoded(creds: Creds) -> None:
    key = creds.issuer_key.private_bytes(
        Encoding.PEM, PrivateFormat.TraditionalOpenSSL, NoEncryption()
    )
    assert key.startswith(b"-----BEGIN EC PRIVATE KEY-----")
    ca = b"# my root\n" + encode_pem("X509 CRL", b"junk") + _pem(creds.root) + b"trailing text\n"
    bundle = creds.load(ca=ca, key=key)
    assert bundle.anchors_pem() == _pem(creds.root)
    assert bundle.issuer_key_pem().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_root_at_end_of_issuer_chain_is_dropped(creds: Creds) -> None:
    bundle = creds.load(issuer=_pem(creds.issuer, creds.root))
    assert bundle.issuer_chain == (creds.issuer,)


def test_longer_issuer_chain_and_several_anchors() -> None:
    ca = TestCA.create("public", now=NOW)
    child = ca.child_ca(now=NOW)
    other = TestCA.create("other", now=NOW)
    bundle = CaBundle.from_pem(
        _pem(other.root_cert, ca.root_cert),
        _pem(*child.chain),
        dump_private_key(child.key),
        now=NOW,
    )
    assert bundle.issuer_chain == child.chain
    assert bundle.root_not_after == min(
        ca.root_cert.not_valid_after_utc, other.root_cert.not_valid_after_utc
    )
    chain, _ = child.issue_svid(APP, now=NOW)
    assert verify_svid(chain, bundle.trust_anchors, now=NOW) == APP


@pytest.mark.parametrize("algorithm", [KeyAlgorithm.EC_P256, KeyAlgorithm.ED25519], ids=str)
def test_generate(algorithm: KeyAlgorithm) -> None:
    bundle = CaBundle.generate("cluster.local", "dapr-system", now=NOW, algorithm=algorithm)
    (root,) = bundle.trust_anchors
    assert root.subject.rfc4514_string() == "O=cluster.local"
    assert bundle.issuer_cert.subject.rfc4514_string() == (
        "O=spiffe://cluster.local/ns/dapr-system/dapr-sentry"
    )
    assert bundle.issuer_not_after == NOW + timedelta(days=365)
    assert bundle.root_not_after == NOW + timedelta(days=365)
    again = CaBundle.from_pem(
        bundle.anchors_pem(), bundle.issuer_chain_pem(), bundle.issuer_key_pem(), now=NOW
    )
    assert again.trust_anchors == bundle.trust_anchors
    assert not hasattr(bundle, "root_key")
    assert CaBundle.generate(TrustDomain("x"), "ns", now=NOW).trust_anchors[0] != root


def test_sign_clamps_to_issuer(creds: Creds) -> None:
    signed = creds.load().sign(generate_key().public_key(), APP, now=NOW, ttl=timedelta(days=365))
    assert signed.clamped
    assert signed.leaf.not_valid_after_utc == creds.issuer.not_valid_after_utc


def _matrix() -> list[tuple[str, object, str]]:
    """(id, make(creds) -> kwargs for Creds.load, expected message regex)."""
    other_key = generate_key()
    rows: list[tuple[str, object, str]] = [
        (
            "empty-ca",
            lambda c: {"ca": b""},
            r"^ca\.crt: no certificates found \(the file is empty\); ca\.crt must hold",
        ),
        (
            "empty-issuer",
            lambda c: {"issuer": b""},
            r"^issuer\.crt: no certificates found \(the file is empty\)",
        ),
        ("empty-key", lambda c: {"key": b""}, r"^issuer\.key: private key is empty: expected"),
        (
            "garbage-ca",
            lambda c: {"ca": b"hello"},
            r"^ca\.crt: no certificates found \(no PEM 'CERTIFICATE' block\)",
        ),
        (
            "garbage-issuer",
            lambda c: {"issuer": b"\x00\x01garbage"},
            r"^issuer\.crt: no certificates found \(no PEM",
        ),
        (
            "corrupt-cert-der",
            lambda c: {"ca": encode_pem("CERTIFICATE", b"\x30\x03\x02\x01\x00")},
            r"^ca\.crt: PEM block #1 is not a valid certificate \(.*\); restore it from a backup",
        ),
        (
            "garbage-key",
            lambda c: {"key": b"hello"},
            r"^issuer\.key: private key is not PEM-encoded",
        ),
        (
            "encrypted-key",
            lambda c: {"key": (DATA / "encrypted.pkcs8.key").read_bytes()},
            r"^issuer\.key: private key is encrypted \('ENCRYPTED PRIVATE KEY'\).*decrypt it first",
        ),
        (
            "legacy-encrypted-key",
            lambda c: {"key": (DATA / "encrypted.legacy.key").read_bytes()},
            r"^issuer\.key: private key is encrypted \('EC PRIVATE KEY'\)",
        ),
        (
            "unknown-key-block",
            lambda c: {"key": (DATA / "public.pem").read_bytes()},
            r"^issuer\.key: unsupported block type 'PUBLIC KEY'",
        ),
        (
            "key-does-not-match",
            lambda c: {"key": dump_private_key(other_key)},
            r"^issuer\.key: issuer key does not match issuer certificate; use the"
            r" private key of issuer\.crt",
        ),
        (
            "root-key-instead-of-issuer-key",
            lambda c: {"key": dump_private_key(c.root_key)},
            r"^issuer\.key: issuer key does not match issuer certificate",
        ),
        (
            "anchor-not-self-signed",
            lambda c: {"ca": _pem(c.issuer)},
            r"^ca\.crt: certificate in trust anchor is not self-signed: .*put"
            r" intermediates in issuer\.crt",
        ),
        (
            "issuer-not-signed-by-anchor",
            lambda c: {"ca": _pem(make_cert("Other Root", other_key))},
            r"^issuer\.crt: issuer chain does not belong to trust anchors: x509:"
            r" certificate signed by unknown authority; sign issuer\.crt",
        ),
        (
            "chain-wrong-order",
            lambda c: {"issuer": _pem(c.root, c.issuer)},
            r"^issuer\.crt: certificate chain is not valid: certificate #1"
            r" \('CN=Example Root CA'\) is not signed by certificate #2",
        ),
        (
            "issuer-not-ca",
            lambda c: {
                "issuer": _pem(
                    make_cert("Leafy", c.issuer_key, (c.root, c.root_key), ca=None, cert_sign=False)
                )
            },
            r"^issuer\.crt: intermediate certificate is not valid for signing: it"
            r" has no basicConstraints extension.*issue it as a CA",
        ),
        (
            "issuer-ca-false",
            lambda c: {
                "issuer": _pem(make_cert("NotCA", c.issuer_key, (c.root, c.root_key), ca=False))
            },
            r"^issuer\.crt: intermediate certificate is not valid for signing: its"
            r" basicConstraints say CA:false; issue",
        ),
        (
            "issuer-no-cert-sign",
            lambda c: {
                "issuer": _pem(
                    make_cert("NoSign", c.issuer_key, (c.root, c.root_key), cert_sign=False)
                )
            },
            r"^issuer\.crt: intermediate certificate is not valid for signing: its"
            r" keyUsage lacks keyCertSign",
        ),
        (
            "expired-issuer",
            lambda c: {
                "issuer": _pem(
                    make_cert(
                        "Old",
                        c.issuer_key,
                        (c.root, c.root_key),
                        not_after=NOW - timedelta(hours=1),
                    )
                )
            },
            r"^issuer\.crt: issuer chain does not belong to trust anchors: x509:"
            r" certificate has expired or is not yet valid: current time"
            r" 2026-06-01T00:00:00Z is after 2026-05-31T23:00:00Z; renew",
        ),
        (
            "issuer-not-yet-valid",
            lambda c: {
                "issuer": _pem(
                    make_cert(
                        "Future",
                        c.issuer_key,
                        (c.root, c.root_key),
                        not_before=NOW + timedelta(hours=1),
                    )
                )
            },
            r"^issuer\.crt: .*x509: certificate has expired or is not yet valid:"
            r" current time 2026-06-01T00:00:00Z is before 2026-06-01T01:00:00Z",
        ),
        (
            "expired-root",
            lambda c: {
                "ca": _pem(
                    make_cert("Example Root CA", c.root_key, not_after=NOW - timedelta(days=1))
                )
            },
            r"^issuer\.crt: issuer chain does not belong to trust anchors: x509:"
            r" certificate signed by unknown authority \(possibly because of 'x509:"
            r" certificate has expired",
        ),
        (
            "issuer-eku-client-only",
            lambda c: {
                "issuer": _pem(
                    make_cert(
                        "ClientOnly",
                        c.issuer_key,
                        (c.root, c.root_key),
                        eku=(ExtendedKeyUsageOID.CLIENT_AUTH,),
                    )
                )
            },
            r"^issuer\.crt: .*x509: certificate specifies an incompatible key usage",
        ),
        (
            "ca-unknown-key-algorithm",
            lambda c: {
                "ca": unknown_key_algorithm("CERTIFICATE", c.root.public_bytes(Encoding.DER))
            },
            r"^ca\.crt: certificate in trust anchor is not self-signed: x509: signature check "
            r"failed: Unknown key type",
        ),
        (
            "issuer-unknown-key-algorithm",
            lambda c: {
                "issuer": unknown_key_algorithm("CERTIFICATE", c.issuer.public_bytes(Encoding.DER))
            },
            r"^issuer\.crt: unsupported public key in the issuer certificate: Unknown key type",
        ),
        (
            "key-unknown-algorithm",
            lambda c: {
                "key": unknown_key_algorithm(
                    "PRIVATE KEY",
                    c.issuer_key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption()),
                )
            },
            r"^issuer\.key: failed to parse 'PRIVATE KEY' block: .*Unknown key type",
        ),
    ]
    return rows


MATRIX = _matrix()


@pytest.mark.parametrize(
    ("make", "message"), [(m, msg) for _, m, msg in MATRIX], ids=[i for i, _, _ in MATRIX]
)
def test_invalid_bundles(creds: Creds, make: object, message: str) -> None:
    with pytest.raises(InvalidBundle, match=message):
        creds.load(**make(creds))  # type: ignore[operator]


def test_all_problems_are_collected(creds: Creds) -> None:
    with pytest.raises(InvalidBundle) as info:
        creds.load(ca=b"", issuer=b"", key=b"")
    lines = str(info.value).splitlines()
    assert [line.split(":")[0] for line in lines] == ["ca.crt", "issuer.crt", "issuer.key"]


def test_messages_do_not_leak_key_material(creds: Creds) -> None:
    key_pem = dump_private_key(generate_key())
    with pytest.raises(InvalidBundle) as info:
        creds.load(key=key_pem)
    body = key_pem.splitlines()[1].decode()
    assert body not in str(info.value)


def test_key_and_chain_problems_are_both_reported(creds: Creds) -> None:
    expired = make_cert(
        "Old", creds.issuer_key, (creds.root, creds.root_key), not_after=NOW - timedelta(hours=1)
    )
    with pytest.raises(InvalidBundle) as info:
        creds.load(issuer=_pem(expired), key=dump_private_key(generate_key()))
    lines = str(info.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("issuer.key: issuer key does not match issuer certificate")
    assert lines[1].startswith("issuer.crt: issuer chain does not belong to trust anchors: x509: ")


def test_cut_second_root_in_ca_crt_is_refused_not_dropped(creds: Creds) -> None:
    """Go's decoder would skip the cut root and load a one-root bundle with no warning."""
    other = make_cert("Other Root CA", generate_key(), pathlen=1)
    whole = _pem(creds.root) + _pem(other)
    assert len(creds.load(ca=whole).trust_anchors) == 2
    cut = whole[: len(_pem(creds.root)) + len(_pem(other)) // 2]
    with pytest.raises(
        InvalidBundle,
        match=r"^ca\.crt: PEM block #2 \('CERTIFICATE'\) has no END line: the file is truncated "
        r"or the block is damaged; restore it from a backup",
    ):
        creds.load(ca=cut)


@pytest.mark.parametrize(
    ("field", "damage", "message"),
    [
        (
            "issuer",
            lambda pem: pem.replace(b"\n", b"\n!", 3),
            r"^issuer\.crt: PEM block #1 \('CERTIFICATE'\) is damaged \(its body is not valid",
        ),
        (
            "key",
            lambda pem: pem + b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n",
            r"^issuer\.key: PEM block #2 \('EC PARAMETERS'\) has no END line",
        ),
        (
            "ca",
            lambda pem: pem + dump_private_key(generate_key()),
            r"^ca\.crt: PEM block #2 is a 'PRIVATE KEY', not a 'CERTIFICATE'; ca\.crt must hold "
            r"only certificates",
        ),
    ],
    ids=["issuer-bad-base64", "key-trailing-cut-block", "key-in-ca"],
)
def test_damaged_blocks_name_the_file(
    creds: Creds, field: str, damage: object, message: str
) -> None:
    good = {
        "ca": _pem(creds.root),
        "issuer": _pem(creds.issuer),
        "key": dump_private_key(creds.issuer_key),
    }
    with pytest.raises(InvalidBundle, match=message):
        creds.load(**{field: damage(good[field])})  # type: ignore[operator]


def test_chain_pem_is_leaf_then_issuer_chain_without_self_signed_certificates(
    creds: Creds,
) -> None:
    # The issuer chain is encoded once per bundle; every leaf is followed by the same bytes.
    with_root = CaBundle((creds.root,), (creds.issuer, creds.root), creds.issuer_key)
    first = with_root.sign(generate_key().public_key(), APP, now=NOW)
    second = with_root.sign(generate_key().public_key(), APP, now=NOW)
    assert load_certificates(first.chain_pem) == (first.leaf, creds.issuer)
    assert first.chain_pem == first.leaf.public_bytes(Encoding.PEM) + _pem(creds.issuer)
    assert second.chain_pem == second.leaf.public_bytes(Encoding.PEM) + _pem(creds.issuer)
    root_signs = CaBundle((creds.root,), (creds.root,), creds.root_key)
    alone = root_signs.sign(generate_key().public_key(), APP, now=NOW)
    assert load_certificates(alone.chain_pem) == (alone.leaf,)
