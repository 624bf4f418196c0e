"""``ssl`` contexts for SPIFFE mutual TLS, post-handshake peer checks, and rotation.

Every context: TLS >= 1.2, ALPN ``h2``, ``check_hostname=False`` (SVIDs carry no DNS names).
:func:`peer_spiffe_id` applies the go-spiffe rules (§9.6) to the peer's chain with our own
Go-semantics path builder (:mod:`pysentry.pki.chain`) and runs the authorizer; that check is the
one that decides, as in go-spiffe (``InsecureSkipVerify`` plus ``VerifyPeerCertificate``).

OpenSSL's own chain building differs from Go's: an issuer whose subject equals its issuer name
and that has no authority key identifier (the docs' ``step certificate create cluster.local ...
--profile intermediate-ca`` recipe) looks self-signed to OpenSSL ("self-signed certificate in
certificate chain"), while Go follows the signature to the root. So:

- clients made with ``verify_after_handshake=True`` (the ``SpiffeChannel`` dialers) let OpenSSL
  accept any server certificate and MUST run :func:`peer_spiffe_id` before sending a byte;
- servers (which must ask OpenSSL for the client certificate, and Python cannot ask without
  verifying) trust the anchors plus, as partial-chain anchors, the CA certificates of their own
  SVID chains that verify against the anchors with our verifier (:func:`verified_issuers`). The
  connection is then re-checked against the anchors alone by :func:`peer_spiffe_id`.

Python 3.11 has no public API for the peer's chain: we read it through the
``_sslobj.get_unverified_chain()`` that CPython has had since 3.10 (public in 3.13) and verify it
ourselves with :func:`pysentry.pki.svid.verify_svid` (the project needs Python >= 3.11).

Rotation (never mutate a live context) builds on these contexts in :mod:`.rotation`.

Keys reach OpenSSL through a memory-only file (``memfd_create``), or, where that is missing,
a file in a private 0700 temp dir that is deleted right after ``load_cert_chain``.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.serialization import Encoding

from pysentry.clock import system_clock
from pysentry.errors import InvalidBundle, PeerRejected
from pysentry.pki.chain import ChainError, is_ca, verify_chain
from pysentry.pki.svid import Authorizer, verify_svid
from pysentry.security.anchors import Anchors, TrustAnchors
from pysentry.security.identity import X509Svid
from pysentry.spiffe import SpiffeId

ALPN_PROTOCOLS = ("h2",)
AnchorsLike = TrustAnchors | Sequence[x509.Certificate]


def anchor_certs(anchors: AnchorsLike) -> Anchors:
    """The certificates of a source or a sequence."""
    if isinstance(anchors, Sequence):
        return tuple(anchors)
    return anchors.current()


def _load_identity(ctx: ssl.SSLContext, svid: X509Svid) -> None:
    data = svid.chain_pem() + svid.key_pem()
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("pysentry-svid", os.MFD_CLOEXEC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            ctx.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    import tempfile  # only without memfd_create (and tempfile imports shutil, bz2, lzma)

    with tempfile.TemporaryDirectory(prefix="pysentry-tls-") as tmp:  # created 0700
        path = Path(tmp) / "svid.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        try:
            ctx.load_cert_chain(path)
        finally:
            path.unlink()


def looks_self_signed(cert: x509.Certificate) -> bool:
    """OpenSSL's view of a self-signed certificate: subject equal to issuer and no authority key
    identifier naming another key. The docs' step recipe makes such an intermediate."""
    if cert.subject != cert.issuer:
        return False
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return True
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return aki.key_identifier is None
    return aki.key_identifier is None or aki.key_identifier == ski.digest


def verified_issuers(
    chains: Iterable[Sequence[x509.Certificate]], anchors: Anchors, now: datetime
) -> tuple[x509.Certificate, ...]:
    """The CA certificates above the leaf of ``chains`` that OpenSSL would take for self-signed
    roots (:func:`looks_self_signed`) and that verify against ``anchors`` at ``now``.

    Go-semantics verification (:func:`pysentry.pki.chain.verify_chain`); anything that does not
    verify, has expired or is not a CA is left out. Only the look-alikes are returned: adding an
    ordinary issuer to OpenSSL's store would make OpenSSL pick it, by subject name, for a peer
    whose different issuer has the same name (a new root with a new issuer key during a root
    rotation) and fail with "certificate signature failure".
    """
    out: dict[bytes, x509.Certificate] = {}
    for chain in chains:
        for i, cert in enumerate(chain[1:], start=1):
            if not is_ca(cert) or cert in anchors or not looks_self_signed(cert):
                continue
            try:
                verify_chain(cert, chain[i + 1 :], anchors, now=now)
            except ChainError:
                continue
            out.setdefault(cert.fingerprint(SHA256()), cert)
    return tuple(out.values())


def _configure(
    ctx: ssl.SSLContext,
    anchors: Anchors | None,
    alpn: Sequence[str],
    *,
    issuers: Sequence[x509.Certificate] = (),
    verify_after_handshake: bool = False,
) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if anchors is None:
        ctx.verify_mode = ssl.CERT_NONE
        return
    if not anchors:
        raise InvalidBundle("no trust anchors: peers cannot be verified without them")
    if verify_after_handshake:
        ctx.verify_mode = ssl.CERT_NONE  # the caller runs peer_spiffe_id before any request
        return
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    ctx.load_verify_locations(
        cadata="".join(c.public_bytes(Encoding.PEM).decode("ascii") for c in (*anchors, *issuers))
    )


def server_context(
    svid: X509Svid,
    anchors: AnchorsLike | None,
    *,
    require_client_cert: bool = True,
    alpn: Sequence[str] = ALPN_PROTOCOLS,
    issuers: Sequence[x509.Certificate] = (),
    now: datetime | None = None,
) -> ssl.SSLContext:
    """A server context presenting ``svid``'s chain.

    ``require_client_cert=True``: mutual TLS, the client's chain must verify against ``anchors``
    (OpenSSL also accepts a chain that reaches ``issuers`` or a verified CA of ``svid``'s own
    chain; serve it with :class:`pysentry.security.channel.SpiffeServer`, which re-checks every
    client against the anchors alone). ``False``: TLS only, no certificate request (Sentry).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if require_client_cert:
        certs = anchor_certs(anchors) if anchors is not None else ()
        extra = tuple(issuers) + verified_issuers([svid.chain], certs, now or system_clock())
        _configure(ctx, certs, alpn, issuers=extra)
    else:
        _configure(ctx, None, alpn)
    _load_identity(ctx, svid)
    return ctx


def client_context(
    svid: X509Svid | None,
    anchors: AnchorsLike,
    *,
    alpn: Sequence[str] = ALPN_PROTOCOLS,
    verify_after_handshake: bool = False,
) -> ssl.SSLContext:
    """A client context verifying the server against ``anchors`` (no hostname check).

    With ``svid`` the client presents its chain (mutual TLS); without, it presents nothing.
    ``verify_after_handshake=True``: OpenSSL does not verify the server; the caller must run
    :func:`peer_spiffe_id` before it sends anything (``SpiffeChannel`` does).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    _configure(ctx, anchor_certs(anchors), alpn, verify_after_handshake=verify_after_handshake)
    if svid is not None:
        _load_identity(ctx, svid)
    return ctx


def peer_chain(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> tuple[x509.Certificate, ...]:
    """The chain the peer presented, leaf first (only the leaf where CPython cannot tell)."""
    getter = getattr(ssl_object, "get_unverified_chain", None)  # Python >= 3.13
    if getter is None:
        getter = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    if getter is not None:
        raw = getter() or []
        ders = [c if isinstance(c, bytes) else c.public_bytes(2) for c in raw]  # 2: DER
        if ders:
            return tuple(x509.load_der_x509_certificate(der) for der in ders)
    leaf = ssl_object.getpeercert(binary_form=True)
    return (x509.load_der_x509_certificate(leaf),) if leaf else ()


def peer_spiffe_id(
    ssl_object: ssl.SSLObject | ssl.SSLSocket,
    anchors: AnchorsLike,
    authorizer: Authorizer | None,
    now: datetime,
) -> SpiffeId:
    """The peer's verified SPIFFE ID after the handshake; ``PeerRejected`` if not acceptable."""
    chain = peer_chain(ssl_object)
    if not chain:
        raise PeerRejected("x509svid: peer presented no certificate")
    return verify_svid(chain, anchor_certs(anchors), now=now, authorizer=authorizer)
