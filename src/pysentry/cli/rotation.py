"""What ``renew-certificate`` writes: new CA credentials computed from the current ones.

* With the current root's key, the root is re-issued with the same subject, key and extensions (only
  serial and validity change), so every existing chain still verifies under either copy.
* With a new key, the new root goes first in ``ca.crt`` and the old, unexpired roots stay after it,
  so leaves under either root verify while the new bundle spreads.
* Provided certificates are validated with ``CaBundle.from_pem`` and written as given, plus the
  current roots of other keys (appended), as with a new key.
* Expired roots are left out (``Renewal.expired``, so the command can say so).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from pysentry.cli.backend import Credentials
from pysentry.cli.console import CliError
from pysentry.credentials import CA_FILENAME
from pysentry.errors import InvalidSpiffeId
from pysentry.pki.bundle import CaBundle
from pysentry.pki.csr import signature_hash
from pysentry.pki.keys import (
    KeyAlgorithm,
    PrivateKey,
    dump_private_key,
    generate_key,
    same_public_key,
)
from pysentry.pki.pem import dump_certificates
from pysentry.pki.profiles import issuer_certificate, random_serial, root_certificate
from pysentry.spiffe import SpiffeId, TrustDomain

DEFAULT_TRUST_DOMAIN = "cluster.local"


@dataclass(frozen=True, slots=True)
class Renewal:
    """Credentials about to be written, and what they mean for running sidecars."""

    credentials: Credentials
    root: x509.Certificate  # the first root of ca.crt (what ``mtls expiry`` reports)
    old_roots: tuple[x509.Certificate, ...]  # earlier roots kept in ca.crt (other keys)
    root_key_changed: bool  # True when the new root has another key than every previous root
    first: bool  # there were no credentials before
    expired: tuple[x509.Certificate, ...] = ()  # previous roots left out because they expired


def _same_key(cert: x509.Certificate, key: PrivateKey) -> bool:
    return same_public_key(cert.public_key(), key.public_key())


def reissue_root(
    old: x509.Certificate, key: PrivateKey, *, now: datetime, ttl: timedelta, skew: timedelta
) -> x509.Certificate:
    """Same subject, key and extensions as ``old``; a new serial and validity window."""
    builder = (
        x509.CertificateBuilder()
        .serial_number(random_serial())
        .subject_name(old.subject)
        .issuer_name(old.subject)
        .public_key(key.public_key())
        .not_valid_before(now - skew)
        .not_valid_after(now + ttl)
    )
    for ext in old.extensions:
        builder = builder.add_extension(ext.value, critical=ext.critical)
    return builder.sign(key, signature_hash(key))


def trust_domain_of(root: x509.Certificate) -> TrustDomain:
    """The trust domain a root names: that of its SPIFFE URI SAN, else its subject ``O=`` when
    that is a trust domain (a Dapr root), else ``cluster.local`` for a root with no ``O=``.

    Raises :class:`CliError` asking for ``--trust-domain`` when the root names none (the Dapr
    docs' OpenSSL root has ``O=dapr.io/sentry``, which is not a trust domain).
    """
    try:
        sans = root.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    for uri in uris:
        if uri.startswith("spiffe://"):
            try:
                return SpiffeId.parse(uri).trust_domain
            except InvalidSpiffeId:
                continue
    orgs = root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    value = orgs[0].value if orgs else ""
    if not value:
        return TrustDomain.parse(DEFAULT_TRUST_DOMAIN)
    try:
        return TrustDomain.parse(str(value))
    except InvalidSpiffeId:
        raise CliError(
            f"cannot tell the trust domain of the root in {CA_FILENAME} with this key: its "
            f"subject O {value!r} is not a trust domain and it has no SPIFFE URI SAN; give it "
            "with --trust-domain (the trust domain Sentry runs with, e.g. cluster.local)"
        ) from None


def generate(
    root_key: PrivateKey,
    current: Sequence[x509.Certificate],
    *,
    trust_domain: str | None,
    now: datetime,
    ttl: timedelta,
    skew: timedelta,
) -> Renewal:
    """A root for ``root_key`` (re-issued if ``current`` has one) and a new P-256 issuer."""
    same = [a for a in current if _same_key(a, root_key)]
    others = tuple(a for a in current if not _same_key(a, root_key) and a.not_valid_after_utc > now)
    expired = tuple(a for a in current if not _same_key(a, root_key) and a not in others)
    if same:
        root = reissue_root(same[0], root_key, now=now, ttl=ttl, skew=skew)
        td = TrustDomain.parse(trust_domain) if trust_domain else trust_domain_of(same[0])
    else:
        td = TrustDomain.parse(trust_domain or DEFAULT_TRUST_DOMAIN)
        root = root_certificate(root_key, td, now=now, ttl=ttl, skew=skew)
    issuer_key = generate_key(KeyAlgorithm.EC_P256)
    issuer = issuer_certificate(
        issuer_key.public_key(),
        root_cert=root,
        root_key=root_key,
        trust_domain=td,
        namespace=os.environ.get("NAMESPACE") or "default",
        now=now,
        ttl=ttl,
        skew=skew,
    )
    creds = Credentials(
        ca_pem=dump_certificates((root, *others)),
        issuer_pem=dump_certificates((issuer,)),
        key_pem=dump_private_key(issuer_key),
    )
    CaBundle.from_pem(creds.ca_pem, creds.issuer_pem, creds.key_pem, now=now)  # self-check
    changed = bool(current) and not same
    return Renewal(creds, root, others, changed, first=not current, expired=expired)


def provided(creds: Credentials, current: Sequence[x509.Certificate], *, now: datetime) -> Renewal:
    """User-supplied credentials, validated as Sentry will (``InvalidBundle`` otherwise).

    The files are written as given, except that unexpired roots of the current ``ca.crt`` whose
    key is not among the new roots are appended to it, as with a generated root: certificates
    under the old root keep verifying until ``dapr mtls drop-old-roots``.
    """
    anchors = CaBundle.from_pem(
        creds.ca_pem, creds.issuer_pem, creds.key_pem, now=now
    ).trust_anchors

    def known(old: x509.Certificate) -> bool:
        return any(same_public_key(old.public_key(), new.public_key()) for new in anchors)

    others = tuple(a for a in current if not known(a) and a.not_valid_after_utc > now)
    expired = tuple(a for a in current if not known(a) and a not in others)
    ca_pem = creds.ca_pem
    if others:
        ca_pem = ca_pem.rstrip(b"\r\n") + b"\n" + dump_certificates(others)
    changed = bool(current) and not any(known(a) for a in current)
    return Renewal(
        Credentials(ca_pem, creds.issuer_pem, creds.key_pem),
        anchors[0],
        others,
        changed,
        first=not current,
        expired=expired,
    )


def split_roots(bundle: CaBundle) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    """(roots that signed the top of the issuer chain, the other roots)."""
    top = bundle.issuer_chain[-1]
    keep: list[x509.Certificate] = []
    drop: list[x509.Certificate] = []
    for anchor in bundle.trust_anchors:
        try:
            top.verify_directly_issued_by(anchor)
        except (InvalidSignature, ValueError, TypeError):
            drop.append(anchor)
        else:
            keep.append(anchor)
    return keep, drop
