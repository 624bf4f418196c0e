"""A reusable test CA (the shape of go-spiffe's ``internal/test/ca.go``).

::

    ca = TestCA.create("public")
    chain, key = ca.issue_svid(SpiffeId.for_app("public", "default", "app"))
    deeper = ca.child_ca()              # issuer signed by ca's issuer; same trust anchors
    ca.write_credentials(tmp_path)      # ca.crt, issuer.crt, issuer.key as Sentry reads them

Unlike a Dapr-generated CA, the test CA keeps its root key so it can mint child CAs.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import ClassVar

from cryptography import x509
from cryptography.x509.oid import NameOID

from pysentry.clock import system_clock
from pysentry.fileio import write_atomic
from pysentry.pki.bundle import CaBundle
from pysentry.pki.csr import signature_hash
from pysentry.pki.keys import KeyAlgorithm, PrivateKey, PublicKey, generate_key
from pysentry.pki.profiles import (
    DEFAULT_CLOCK_SKEW,
    authority_key_identifier,
    issuer_certificate,
    random_serial,
    root_certificate,
    workload_certificate,
)
from pysentry.spiffe import SpiffeId, TrustDomain

DEFAULT_SVID_TTL = timedelta(hours=1)
DEFAULT_TEST_CA_TTL = timedelta(days=30)
_child_numbers = itertools.count(1)


def _child_certificate(
    public_key: PublicKey,
    *,
    parent_cert: x509.Certificate,
    parent_key: PrivateKey,
    now: datetime,
    ttl: timedelta,
) -> x509.Certificate:
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"pysentry test CA {next(_child_numbers)}")]
    )
    builder = (
        x509.CertificateBuilder()
        .serial_number(random_serial())
        .subject_name(name)
        .issuer_name(parent_cert.subject)
        .public_key(public_key)
        .not_valid_before(now - DEFAULT_CLOCK_SKEW)
        .not_valid_after(min(now + ttl, parent_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(authority_key_identifier(parent_cert), critical=False)
    )
    return builder.sign(parent_key, signature_hash(parent_key))


@dataclass(frozen=True, slots=True)
class TestCA:
    """A root, an issuing CA below it (maybe through intermediates), and the issuing CA's key."""

    __test__: ClassVar[bool] = False  # not a pytest test class

    trust_domain: TrustDomain
    root_cert: x509.Certificate
    root_key: PrivateKey
    cert: x509.Certificate
    key: PrivateKey
    intermediates: tuple[x509.Certificate, ...] = ()  # CAs between ``cert`` and the root
    algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256

    @classmethod
    def create(
        cls,
        trust_domain: TrustDomain | str = "public",
        *,
        algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256,
        now: datetime | None = None,
        namespace: str = "default",
        ttl: timedelta = DEFAULT_TEST_CA_TTL,
    ) -> TestCA:
        """A root and a Dapr-profile issuer (``O=spiffe://<td>/ns/<namespace>/dapr-sentry``)."""
        td = trust_domain if isinstance(trust_domain, TrustDomain) else TrustDomain(trust_domain)
        now = now or system_clock()
        root_key = generate_key(algorithm)
        root = root_certificate(root_key, td, now=now, ttl=ttl)
        key = generate_key(algorithm)
        cert = issuer_certificate(
            key.public_key(),
            root_cert=root,
            root_key=root_key,
            trust_domain=td,
            namespace=namespace,
            now=now,
            ttl=ttl,
        )
        return cls(td, root, root_key, cert, key, (), algorithm)

    def child_ca(
        self, *, now: datetime | None = None, ttl: timedelta = DEFAULT_TEST_CA_TTL
    ) -> TestCA:
        """A CA signed by this CA's issuing key; it chains to the same root."""
        now = now or system_clock()
        key = generate_key(self.algorithm)
        cert = _child_certificate(
            key.public_key(), parent_cert=self.cert, parent_key=self.key, now=now, ttl=ttl
        )
        return TestCA(
            self.trust_domain,
            self.root_cert,
            self.root_key,
            cert,
            key,
            (self.cert, *self.intermediates),
            self.algorithm,
        )

    def issue_svid(
        self,
        spiffe_id: SpiffeId | str,
        *,
        ttl: timedelta = DEFAULT_SVID_TTL,
        now: datetime | None = None,
        key: PrivateKey | None = None,
        dns_names: Sequence[str] = (),
    ) -> tuple[tuple[x509.Certificate, ...], PrivateKey]:
        """A workload SVID chain ``(leaf, issuer, ...intermediates)`` and its private key."""
        sid = spiffe_id if isinstance(spiffe_id, SpiffeId) else SpiffeId.parse(spiffe_id)
        key = key or generate_key(self.algorithm)
        leaf = workload_certificate(
            key.public_key(),
            sid,
            issuer_cert=self.cert,
            issuer_key=self.key,
            now=now or system_clock(),
            ttl=ttl,
            dns_names=dns_names,
        ).cert
        return (leaf, *self.chain), key

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """This CA's certificate followed by the intermediates above it (no root)."""
        return (self.cert, *self.intermediates)

    @property
    def bundle(self) -> CaBundle:
        return CaBundle((self.root_cert,), self.chain, self.key)

    def anchors_pem(self) -> bytes:
        return self.bundle.anchors_pem()

    def write_credentials(self, directory: Path) -> None:
        """Write ``ca.crt``, ``issuer.crt`` and ``issuer.key`` (mode 0600) into ``directory``."""
        bundle = self.bundle
        write_atomic(directory / "ca.crt", bundle.anchors_pem())
        write_atomic(directory / "issuer.crt", bundle.issuer_chain_pem())
        write_atomic(directory / "issuer.key", bundle.issuer_key_pem())
