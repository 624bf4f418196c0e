"""The offline quickstart: a CA in a temp dir, two SVIDs from fresh CSRs, one mutual-TLS call.

No Sentry and no sidecar: everything runs in this process, on 127.0.0.1. ``make demo`` falls back
to it when the ``sentry`` or ``daprd`` entry points are missing.
"""

from __future__ import annotations

import socket
import ssl
import tempfile
import threading
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from cryptography import x509

from pysentry.cli.chainview import render
from pysentry.clock import system_clock
from pysentry.fileio import ensure_private_dir, write_atomic
from pysentry.pki.bundle import CaBundle
from pysentry.pki.csr import build_csr, parse_csr
from pysentry.pki.keys import PrivateKey, dump_private_key, generate_key
from pysentry.pki.pem import dump_certificates, load_certificates
from pysentry.pki.svid import authorize_id, verify_svid
from pysentry.spiffe import SpiffeId, TrustDomain

TRUST_DOMAIN = TrustDomain("cluster.local")
NAMESPACE = "default"


def _issue(bundle: CaBundle, app_id: str) -> tuple[tuple[x509.Certificate, ...], PrivateKey]:
    """What Sentry does for a sidecar: fresh key, CSR, proof-of-possession check, sign."""
    key = generate_key()
    public_key = parse_csr(build_csr(key))
    signed = bundle.sign(
        public_key,
        SpiffeId.for_app(TRUST_DOMAIN, NAMESPACE, app_id),
        now=system_clock(),
        ttl=timedelta(hours=1),
    )
    return load_certificates(signed.chain_pem), key


def _context(
    server: bool,
    chain: Sequence[x509.Certificate],
    key: PrivateKey,
    anchors_pem: bytes,
    workdir: Path,
    name: str,
) -> ssl.SSLContext:
    cert_file, key_file = workdir / f"{name}.crt", workdir / f"{name}.key"
    write_atomic(cert_file, dump_certificates(chain))
    write_atomic(key_file, dump_private_key(key))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=anchors_pem.decode())
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


def _peer_id(
    tls: ssl.SSLSocket,
    issuer_chain: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    expected: SpiffeId,
) -> SpiffeId:
    der = tls.getpeercert(binary_form=True)
    if der is None:
        raise RuntimeError("peer sent no certificate")
    leaf = x509.load_der_x509_certificate(der)
    return verify_svid(
        (leaf, *issuer_chain), anchors, now=system_clock(), authorizer=authorize_id(expected)
    )


def run_offline_demo() -> int:
    with tempfile.TemporaryDirectory(prefix="pysentry-demo-") as tmp:
        workdir = Path(tmp)
        certs = workdir / "certs"
        ensure_private_dir(certs)
        bundle = CaBundle.generate(TRUST_DOMAIN, NAMESPACE, now=system_clock())
        write_atomic(certs / "ca.crt", bundle.anchors_pem())
        write_atomic(certs / "issuer.crt", bundle.issuer_chain_pem())
        write_atomic(certs / "issuer.key", bundle.issuer_key_pem())
        print(f"CA created in {certs} (ca.crt, issuer.crt, issuer.key; mode 0600)")
        loaded = CaBundle.from_pem(
            (certs / "ca.crt").read_bytes(),
            (certs / "issuer.crt").read_bytes(),
            (certs / "issuer.key").read_bytes(),
            now=system_clock(),
        )
        anchors_pem = loaded.anchors_pem()
        id_a = SpiffeId.for_app(TRUST_DOMAIN, NAMESPACE, "appA")
        id_b = SpiffeId.for_app(TRUST_DOMAIN, NAMESPACE, "appB")
        chain_a, key_a = _issue(loaded, "appA")
        chain_b, key_b = _issue(loaded, "appB")
        print(f"Signed workload certificates from fresh CSRs: {id_a} and {id_b}")

        server_ctx = _context(True, chain_b, key_b, anchors_pem, workdir, "appB")
        client_ctx = _context(False, chain_a, key_a, anchors_pem, workdir, "appA")
        seen: dict[str, str] = {}
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                seen["caller"] = str(_peer_id(tls, loaded.issuer_chain, loaded.trust_anchors, id_a))
                tls.sendall(b"hello from appB\n")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            client_ctx.wrap_socket(raw) as tls,
        ):
            callee = _peer_id(tls, loaded.issuer_chain, loaded.trust_anchors, id_b)
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
        print(render((*loaded.trust_anchors[:1], *reversed(loaded.issuer_chain), leaf)))
    print("Done: temporary CA removed.")
    return 0
