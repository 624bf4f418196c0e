"""The CA bundle: trust anchors, issuer chain and issuer key (spec §5).

``CaBundle.generate(td, ns, now=...)`` makes a root and an issuer as Dapr does (root key discarded).
``CaBundle.from_pem(ca_pem, issuer_pem, key_pem, now=...)`` applies Dapr's
``verifyX509Bundle`` rules (§5.2), collecting every problem into one :class:`InvalidBundle`.
Each problem names the file (``ca.crt``, ``issuer.crt``, ``issuer.key``), keeps Dapr's
own text, and says how to fix it. The files are read strictly (``pysentry.pki.pem.scan_pem``):
where Go's decoder skips a cut or corrupt block, so a damaged ``ca.crt`` loads as fewer roots,
that block is an error here. Only certificates may be in ``ca.crt`` and ``issuer.crt``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding

from pysentry.errors import InvalidBundle, InvalidKey
from pysentry.pki.chain import ChainError, check_signature_from, verify_chain
from pysentry.pki.keys import (
    KeyAlgorithm,
    PrivateKey,
    PublicKey,
    dump_private_key,
    generate_key,
    load_private_key,
    same_public_key,
)
from pysentry.pki.pem import (
    PemError,
    PemProblem,
    dump_certificates,
    encode_chain,
    is_self_signed,
    scan_pem,
    strict_certificates,
)
from pysentry.pki.profiles import (
    DEFAULT_CA_TTL,
    DEFAULT_CLOCK_SKEW,
    DEFAULT_WORKLOAD_TTL,
    issuer_certificate,
    root_certificate,
    workload_certificate,
)
from pysentry.spiffe import SpiffeId, TrustDomain

CA_FILE, ISSUER_FILE, KEY_FILE = "ca.crt", "issuer.crt", "issuer.key"


@dataclass(frozen=True, slots=True)
class SignedLeaf:
    """A workload certificate and the PEM chain to hand out (leaf + issuer chain, no root)."""

    leaf: x509.Certificate
    chain_pem: bytes
    clamped: bool


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "<empty subject>"


def _certs(pem: bytes, file: str, role: str, problems: list[str]) -> tuple[x509.Certificate, ...]:
    """Strict read (:func:`strict_certificates`): a damaged block is a problem, never skipped."""
    try:
        return strict_certificates(pem, "file")
    except PemError as err:
        if err.kind is PemProblem.EMPTY:
            problems.append(f"{file}: no certificates found (the file is empty); {role}")
        elif err.kind is PemProblem.NO_CERTIFICATE:
            problems.append(f"{file}: no certificates found (no PEM 'CERTIFICATE' block); {role}")
        elif err.kind is PemProblem.NOT_A_CERTIFICATE:
            fix = f"{file} must hold only certificates: move that block to its own file"
            problems.append(f"{file}: {err.problem}; {fix}")
        else:
            problems.append(f"{file}: {err}")
        return ()


def _anchors(pem: bytes, problems: list[str]) -> tuple[x509.Certificate, ...]:
    role = f"{CA_FILE} must hold the root certificate(s) as PEM 'CERTIFICATE' blocks"
    anchors = _certs(pem, CA_FILE, role, problems)
    for cert in anchors:
        try:
            check_signature_from(cert, cert)
        except ChainError as err:
            problems.append(
                f"{CA_FILE}: certificate in trust anchor is not self-signed: {err} "
                f"(subject {_subject(cert)!r}); {CA_FILE} must hold only self-signed root "
                f"certificates: put intermediates in {ISSUER_FILE}"
            )
    return anchors


def _issuer_chain(pem: bytes, problems: list[str]) -> tuple[x509.Certificate, ...]:
    role = f"{ISSUER_FILE} must hold the issuer certificate, then any intermediates above it"
    chain = _certs(pem, ISSUER_FILE, role, problems)
    for index, (child, parent) in enumerate(itertools.pairwise(chain)):
        try:
            check_signature_from(child, parent)
        except ChainError as err:
            problems.append(
                f"{ISSUER_FILE}: certificate chain is not valid: certificate #{index + 1} "
                f"({_subject(child)!r}) is not signed by certificate #{index + 2} "
                f"({_subject(parent)!r}): {err}; order {ISSUER_FILE} issuer first, each "
                "certificate followed by the one that signed it"
            )
            return ()
    if len(chain) > 1 and is_self_signed(chain[-1]):
        chain = chain[:-1]
    if chain:
        try:
            chain[0].public_key()
        except UnsupportedAlgorithm as err:
            problems.append(
                f"{ISSUER_FILE}: unsupported public key in the issuer certificate: {err}; use an "
                "ECDSA P-256, Ed25519 or RSA key"
            )
            return ()
        why = _signing_problem(chain[0])
        if why:
            problems.append(
                f"{ISSUER_FILE}: intermediate certificate is not valid for signing: {why}; issue "
                "it as a CA (basicConstraints=critical,CA:true and "
                "keyUsage=critical,keyCertSign,cRLSign)"
            )
    return chain


def _signing_problem(cert: x509.Certificate) -> str | None:
    """Why ``cert`` cannot sign leaves that verify. Stricter than Dapr, which only refuses a
    certificate lacking all of CA:true, basicConstraints and keyCertSign; Go's verifier would
    then reject every leaf it signs, so we refuse it at load time."""
    try:
        bc: x509.BasicConstraints | None = cert.extensions.get_extension_for_class(
            x509.BasicConstraints
        ).value
    except x509.ExtensionNotFound:
        bc = None
    try:
        ku: x509.KeyUsage | None = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    if bc is None:
        return "it has no basicConstraints extension (CA:true is required)"
    if not bc.ca:
        return "its basicConstraints say CA:false"
    if ku is not None and not ku.key_cert_sign:
        return "its keyUsage lacks keyCertSign"
    return None


def _issuer_key(pem: bytes, problems: list[str]) -> PrivateKey | None:
    try:
        scan_pem(pem, "file")  # a cut or corrupt block anywhere is an error, as for certificates
        return load_private_key(pem)
    except (PemError, InvalidKey) as err:
        problems.append(f"{KEY_FILE}: {err}")
        return None


def _chain_hint(err: ChainError) -> str:
    text = str(err)
    if "expired or is not yet valid" in text:
        return "renew the expired certificate (e.g. 'dapr mtls renew-certificate') or fix the clock"
    if "incompatible key usage" in text:
        return "allow serverAuth in the extendedKeyUsage of the CA certificates, or remove it"
    return f"sign {ISSUER_FILE} with the key of a root in {CA_FILE}, or put that root in {CA_FILE}"


@dataclass(frozen=True, slots=True)
class CaBundle:
    """Trust anchors (roots), the issuer chain (issuer first, no root) and the issuer's key."""

    trust_anchors: tuple[x509.Certificate, ...]
    issuer_chain: tuple[x509.Certificate, ...]
    issuer_key: PrivateKey
    _chain_tail_pem: bytes = field(init=False, repr=False, compare=False)
    """What follows each leaf in ``chain_pem``: the issuer chain without self-signed
    certificates, encoded once (the chain never changes; a reload builds a new bundle)."""

    def __post_init__(self) -> None:
        if not self.trust_anchors:
            raise InvalidBundle("CA bundle: no trust anchors")
        if not self.issuer_chain:
            raise InvalidBundle("CA bundle: empty issuer chain")
        object.__setattr__(self, "_chain_tail_pem", encode_chain(self.issuer_chain))

    @classmethod
    def from_pem(
        cls, ca_pem: bytes, issuer_pem: bytes, key_pem: bytes, *, now: datetime
    ) -> CaBundle:
        """Validate user-provided credentials (§5.2); :class:`InvalidBundle` lists every problem."""
        problems: list[str] = []
        anchors = _anchors(ca_pem, problems)
        chain = _issuer_chain(issuer_pem, problems)
        certs_ok = not problems
        key = _issuer_key(key_pem, problems)
        if (
            chain
            and key is not None
            and not same_public_key(key.public_key(), chain[0].public_key())
        ):
            problems.append(
                f"{KEY_FILE}: issuer key does not match issuer certificate; use the private key "
                f"of {ISSUER_FILE} (compare 'openssl x509 -noout -pubkey -in {ISSUER_FILE}' with "
                f"'openssl pkey -pubout -in {KEY_FILE}')"
            )
        if anchors and chain and certs_ok:
            try:
                verify_chain(chain[0], chain[1:], anchors, now=now, require_server_auth=True)
            except ChainError as err:
                problems.append(
                    f"{ISSUER_FILE}: issuer chain does not belong to trust anchors: {err}; "
                    + _chain_hint(err)
                )
        if problems or key is None:
            raise InvalidBundle("\n".join(problems))
        return cls(anchors, chain, key)

    @classmethod
    def generate(
        cls,
        trust_domain: TrustDomain | str,
        namespace: str,
        *,
        now: datetime,
        algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256,
        skew: timedelta = DEFAULT_CLOCK_SKEW,
        ttl: timedelta = DEFAULT_CA_TTL,
    ) -> CaBundle:
        """A fresh root and issuer (§5.1). The root key is discarded, as Dapr does."""
        td = trust_domain if isinstance(trust_domain, TrustDomain) else TrustDomain(trust_domain)
        root_key = generate_key(algorithm)
        root = root_certificate(root_key, td, now=now, ttl=ttl, skew=skew)
        issuer_key = generate_key(algorithm)
        issuer = issuer_certificate(
            issuer_key.public_key(),
            root_cert=root,
            root_key=root_key,
            trust_domain=td,
            namespace=namespace,
            now=now,
            ttl=ttl,
            skew=skew,
        )
        return cls((root,), (issuer,), issuer_key)

    @property
    def issuer_cert(self) -> x509.Certificate:
        return self.issuer_chain[0]

    @property
    def issuer_not_after(self) -> datetime:
        return self.issuer_chain[0].not_valid_after_utc

    @property
    def root_not_after(self) -> datetime:
        """The earliest expiry among the trust anchors."""
        return min(cert.not_valid_after_utc for cert in self.trust_anchors)

    def anchors_pem(self) -> bytes:
        return dump_certificates(self.trust_anchors)

    def issuer_chain_pem(self) -> bytes:
        return dump_certificates(self.issuer_chain)

    def issuer_key_pem(self) -> bytes:
        return dump_private_key(self.issuer_key)

    def sign(
        self,
        public_key: PublicKey,
        spiffe_id: SpiffeId,
        *,
        now: datetime,
        ttl: timedelta = DEFAULT_WORKLOAD_TTL,
        skew: timedelta = DEFAULT_CLOCK_SKEW,
        dns_names: Sequence[str] = (),
    ) -> SignedLeaf:
        """Sign a workload SVID; ``chain_pem`` is leaf + issuer chain (self-signed skipped:
        never the leaf, whose subject is empty and whose issuer is the issuer's subject)."""
        issued = workload_certificate(
            public_key,
            spiffe_id,
            issuer_cert=self.issuer_chain[0],
            issuer_key=self.issuer_key,
            now=now,
            ttl=ttl,
            skew=skew,
            dns_names=dns_names,
        )
        chain_pem = issued.cert.public_bytes(Encoding.PEM) + self._chain_tail_pem
        return SignedLeaf(issued.cert, chain_pem, issued.clamped)
