"""Would two sidecars with SVIDs from this CA accept each other? Answer by doing it, in memory.

``sidecars_accept(roots, issuer_chain, issuer_key, now=...)`` issues two throwaway workload SVIDs
from the issuer (the profile Sentry uses), then runs a TLS handshake between a server and a
client context exactly as daprd builds them (:func:`pysentry.security.tls.server_context`, and
``client_context(..., verify_after_handshake=True)`` as the dialers use), over memory BIOs, and
checks both peers with :func:`pysentry.security.tls.peer_spiffe_id`. It raises
:class:`pysentry.errors.PeerRejected` with the reason when either side refuses. For
``dapr mtls check``: a bundle passes only if the sidecars' own code path accepts it.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Sequence
from datetime import datetime, timedelta

from cryptography import x509

from pysentry.errors import PeerRejected
from pysentry.pki.keys import PrivateKey, generate_key
from pysentry.pki.profiles import workload_certificate
from pysentry.pki.svid import authorize_path
from pysentry.security.identity import X509Svid
from pysentry.security.tls import client_context, peer_spiffe_id, server_context
from pysentry.spiffe import SpiffeId

_ROUNDS = 20


def _svid(
    issuer_chain: Sequence[x509.Certificate], issuer_key: PrivateKey, app: str, now: datetime
) -> X509Svid:
    key = generate_key()
    spiffe_id = SpiffeId.parse(f"spiffe://public/ns/default/{app}")
    if not issuer_chain[0].not_valid_before_utc <= now <= issuer_chain[0].not_valid_after_utc:
        raise PeerRejected(
            "the issuer certificate is not valid now (valid "
            f"{issuer_chain[0].not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ} to "
            f"{issuer_chain[0].not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}): it cannot issue"
        )
    leaf = workload_certificate(
        key.public_key(),
        spiffe_id,
        issuer_cert=issuer_chain[0],
        issuer_key=issuer_key,
        now=now,
        ttl=timedelta(minutes=5),
        skew=timedelta(minutes=1),
    ).cert
    return X509Svid.from_chain((leaf, *issuer_chain), key)


def _pump(src: ssl.MemoryBIO, dst: ssl.MemoryBIO) -> None:
    data = src.read()
    if data:
        dst.write(data)


def sidecars_accept(
    roots: Sequence[x509.Certificate],
    issuer_chain: Sequence[x509.Certificate],
    issuer_key: PrivateKey,
    *,
    now: datetime,
) -> None:
    """Raise :class:`PeerRejected` unless daprd's TLS code accepts SVIDs from this issuer."""
    if not issuer_chain:
        raise PeerRejected("no issuer certificate")
    anchors = tuple(roots)
    server_svid = _svid(issuer_chain, issuer_key, "check-server", now)
    client_svid = _svid(issuer_chain, issuer_key, "check-client", now)
    server_ctx = server_context(server_svid, anchors, now=now)
    client_ctx = client_context(client_svid, anchors, verify_after_handshake=True)
    s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client = client_ctx.wrap_bio(c_in, c_out, server_side=False)
    done = {"server": False, "client": False}
    try:
        for _ in range(_ROUNDS):
            for name, side in (("client", client), ("server", server)):
                if not done[name]:
                    try:
                        side.do_handshake()
                        done[name] = True
                    except ssl.SSLWantReadError:
                        pass
            _pump(c_out, s_in)
            _pump(s_out, c_in)
            if all(done.values()):
                break
        # TLS 1.3: the server verifies the client's certificate on its last flight.
        _pump(c_out, s_in)
        with contextlib.suppress(ssl.SSLWantReadError):
            server.read(1)
    except ssl.SSLCertVerificationError as err:
        raise PeerRejected(f"TLS handshake refused: {err.verify_message}") from err
    except ssl.SSLError as err:
        raise PeerRejected(f"TLS handshake refused: {err.reason or err}") from err
    if not all(done.values()):
        raise PeerRejected("TLS handshake did not complete")
    peer_spiffe_id(client, anchors, authorize_path("/ns/default/check-server"), now)
    peer_spiffe_id(server, anchors, authorize_path("/ns/default/check-client"), now)
