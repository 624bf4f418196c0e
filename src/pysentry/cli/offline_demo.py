"""The offline quickstart: a CA in a temp dir, two SVIDs from fresh CSRs, one mutual-TLS call.

No Sentry and no sidecar: everything runs in this process, on 127.0.0.1. ``make demo`` falls back
to it when the ``sentry`` or ``daprd`` entry points are missing.
"""

from __future__ import annotations

import socket
import ssl
import tempfile
import threading
from datetime import timedelta
from pathlib import Path

from cryptography import x509

from pysentry.cli.chainview import render
from pysentry.clock import system_clock
from pysentry.credentials import CREDENTIAL_FILENAMES, CredentialPaths, FileStore
from pysentry.pki.bundle import CaBundle
from pysentry.pki.csr import build_csr, parse_csr
from pysentry.pki.keys import generate_key
from pysentry.pki.pem import load_certificates
from pysentry.pki.svid import authorize_id
from pysentry.security.anchors import Anchors
from pysentry.security.identity import X509Svid
from pysentry.security.tls import client_context, peer_spiffe_id, server_context
from pysentry.spiffe import SpiffeId, TrustDomain

TRUST_DOMAIN = TrustDomain("cluster.local")
NAMESPACE = "default"


def _issue(bundle: CaBundle, app_id: str) -> X509Svid:
    """What Sentry does for a sidecar: fresh key, CSR, proof-of-possession check, sign."""
    key = generate_key()
    public_key = parse_csr(build_csr(key))
    signed = bundle.sign(
        public_key,
        SpiffeId.for_app(TRUST_DOMAIN, NAMESPACE, app_id),
        now=system_clock(),
        ttl=timedelta(hours=1),
    )
    return X509Svid.from_chain(load_certificates(signed.chain_pem), key)


def _peer_id(tls: ssl.SSLSocket, anchors: Anchors, expected: SpiffeId) -> SpiffeId:
    return peer_spiffe_id(tls, anchors, authorize_id(expected), system_clock())


def run_offline_demo() -> int:
    with tempfile.TemporaryDirectory(prefix="pysentry-demo-") as tmp:
        workdir = Path(tmp)
        certs = workdir / "certs"
        store = FileStore(CredentialPaths.in_directory(certs))  # Sentry's own store
        store.save(CaBundle.generate(TRUST_DOMAIN, NAMESPACE, now=system_clock()))
        print(f"CA created in {certs} ({', '.join(CREDENTIAL_FILENAMES)}; mode 0600)")
        loaded = store.load(now=system_clock()).bundle
        anchors = loaded.trust_anchors
        svid_a, svid_b = _issue(loaded, "appA"), _issue(loaded, "appB")
        id_a, id_b = svid_a.spiffe_id, svid_b.spiffe_id
        print(f"Signed workload certificates from fresh CSRs: {id_a} and {id_b}")

        server_ctx = server_context(svid_b, anchors)
        client_ctx = client_context(svid_a, anchors)
        seen: dict[str, str] = {}
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                seen["caller"] = str(_peer_id(tls, anchors, id_a))
                tls.sendall(b"hello from appB\n")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            client_ctx.wrap_socket(raw) as tls,
        ):
            callee = _peer_id(tls, anchors, id_b)
            reply = tls.recv(100).decode().strip()
            leaf_der = tls.getpeercert(binary_form=True)
            version = tls.version()
        thread.join(timeout=5)
        listener.close()
        assert leaf_der is not None
        print(f"mTLS call over 127.0.0.1:{port} ({version}): reply {reply!r}")
        print(f"Peer SPIFFE ID seen by the caller (appA): {callee}")
        print(f"Peer SPIFFE ID seen by the callee (appB): {seen.get('caller', '<none>')}")
        print("Certificate chain presented by appB (root -> issuer -> leaf):")
        leaf = x509.load_der_x509_certificate(leaf_der)
        print(render((*anchors[:1], *reversed(loaded.issuer_chain), leaf)))
    print("Done: temporary CA removed.")
    return 0
