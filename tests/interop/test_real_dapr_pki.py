"""Certificates as Dapr v1.16.0's Go ``sentry`` makes them, and each Sentry with the other's daprd.

- the workload leaf a Go Sentry issues and the one pysentry's Sentry issues (same CA, same
  CSR maker, same TTL and skew) have the same extensions, criticality, key usage, EKUs, subject
  and lifetime;
- the root and issuer each Sentry generates on an empty credentials directory match likewise;
- Go Sentry signs for pysentry daprds, which then call each other and a Go daprd.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509

from pysentry.pki.pem import load_certificates
from pysentry.testing import TestCA
from tests.e2e.conftest import Cluster, Daprd
from tests.interop.daprbins import DaprBinaries
from tests.interop.goprograms import GoBinaries, run_go
from tests.interop.realdapr import go_daprd, go_sentry, py_daprd


def profile(cert: x509.Certificate) -> dict[str, Any]:
    """Everything of a certificate's shape that does not depend on keys, serials or time."""
    exts = sorted((e.oid.dotted_string, e.critical) for e in cert.extensions)
    out: dict[str, Any] = {"subject": cert.subject.rfc4514_string(), "extensions": exts}
    for ext in cert.extensions:
        v = ext.value
        if isinstance(v, x509.KeyUsage):
            out["key_usage"] = {
                name: getattr(v, name)
                for name in (
                    "digital_signature",
                    "content_commitment",
                    "key_encipherment",
                    "data_encipherment",
                    "key_agreement",
                    "key_cert_sign",
                    "crl_sign",
                )
            }
        elif isinstance(v, x509.ExtendedKeyUsage):
            out["eku"] = [o.dotted_string for o in v]
        elif isinstance(v, x509.BasicConstraints):
            out["basic_constraints"] = (v.ca, v.path_length)
        elif isinstance(v, x509.SubjectAlternativeName):
            out["san"] = [type(n).__name__ for n in v]
    out["lifetime"] = cert.not_valid_after_utc - cert.not_valid_before_utc
    return out


def _leaf_of(port: int) -> x509.Certificate:
    """The certificate a daprd's internal gRPC server presents (no client certificate sent)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def _ca(cluster: Cluster, name: str) -> tuple[Path, bytes]:
    ca = TestCA.create("localhost")
    creds = cluster.tmp / name
    creds.mkdir(mode=0o700)
    ca.write_credentials(creds)
    return creds, ca.anchors_pem()


async def test_workload_leaf_matches_a_go_issued_leaf(
    dapr_bins: DaprBinaries, cluster: Cluster
) -> None:
    go_creds, go_anchors = _ca(cluster, "go-creds")
    py_creds, py_anchors = _ca(cluster, "py-creds")
    go_proc, go_port = await go_sentry(cluster, dapr_bins, go_creds, ttl="2h", skew="1m")
    py_proc, py_port = await cluster.sentry(py_creds, ttl="2h", skew="1m")
    from_go = await py_daprd(cluster, "leafGo", None, sentry_port=go_port, anchors_pem=go_anchors)
    from_py = await py_daprd(cluster, "leafPy", None, sentry_port=py_port, anchors_pem=py_anchors)
    go_leaf = await asyncio.to_thread(_leaf_of, from_go.internal_port)
    py_leaf = await asyncio.to_thread(_leaf_of, from_py.internal_port)
    assert profile(py_leaf) == profile(go_leaf)
    ku = profile(go_leaf)["key_usage"]
    assert ku["digital_signature"] and ku["key_encipherment"]  # Dapr v1.16's leaf
    # Both Sentries log each signing the same way (debug level).
    for proc, app in ((go_proc, "leafGo"), (py_proc, "leafPy")):
        await proc.wait_log(
            f'level=debug msg="Successfully signed certificate for default/{app}"', timeout=5
        )


async def test_generated_root_and_issuer_match_go_sentry(
    dapr_bins: DaprBinaries, cluster: Cluster
) -> None:
    go_creds, py_creds = cluster.tmp / "go-gen", cluster.tmp / "py-gen"
    go_creds.mkdir(mode=0o700)
    py_creds.mkdir(mode=0o700)
    go_proc, _ = await go_sentry(cluster, dapr_bins, go_creds)
    py_proc, _ = await cluster.sentry(py_creds, name="py-sentry")
    go_proc.stop()
    py_proc.stop()
    for name in ("ca.crt", "issuer.crt"):
        (go_cert,) = load_certificates((go_creds / name).read_bytes())
        (py_cert,) = load_certificates((py_creds / name).read_bytes())
        go_p, py_p = profile(go_cert), profile(py_cert)
        if name == "issuer.crt":
            # Our one addition (docs/choices.md): an AKID, so that OpenSSL picks the right one of
            # two roots with the same name during a root rotation.
            aki = (x509.oid.ExtensionOID.AUTHORITY_KEY_IDENTIFIER.dotted_string, False)
            assert aki in py_p["extensions"] and aki not in go_p["extensions"]
            py_p["extensions"].remove(aki)
        # Both default to trust domain "localhost", so the subjects agree too.
        assert py_p == go_p, name


async def test_go_sentry_signs_for_pysentry_daprds(
    dapr_bins: DaprBinaries, cluster: Cluster
) -> None:
    creds, anchors = _ca(cluster, "creds")
    _, sentry_port = await go_sentry(cluster, dapr_bins, creds)
    _, app_a = await cluster.app("appA")
    _, app_b = await cluster.app("appB")
    _, app_g = await cluster.app("appG")
    a = await py_daprd(cluster, "appA", app_a, sentry_port=sentry_port, anchors_pem=anchors)
    b = await py_daprd(cluster, "appB", app_b, sentry_port=sentry_port, anchors_pem=anchors)
    g = await go_daprd(
        cluster, dapr_bins, "appG", app_g, sentry_port=sentry_port, anchors_pem=anchors
    )
    await _invoke_all(a, b, g)


async def _invoke_all(*daprds: Daprd) -> None:
    async with aiohttp.ClientSession() as s:
        for caller in daprds:
            for callee in daprds:
                if callee is caller:
                    continue
                url = f"{caller.url}/v1.0/invoke/{callee.app_id}/method/echo"
                async with s.post(url, data=b"hi") as r:
                    text = await r.text()
                    assert r.status == 200, (caller.app_id, callee.app_id, text)
                    assert json.loads(text)["headers"]["dapr-caller-app-id"] == caller.app_id


async def test_go_sentry_v1_16_0_signs_only_ecdsa_csrs_with_an_ecdsa_issuer(
    dapr_bins: DaprBinaries, go_bins_light: GoBinaries, cluster: Cluster
) -> None:
    """What docs/choices.md says about CSR key types, measured on the real v1.16.0 Sentry: the
    leaf template copies the CSR's signature algorithm, so with a P-256 issuer an Ed25519 or RSA
    CSR fails (``Internal``, ``failed to sign certificate``). pysentry's Sentry signs all three."""
    creds, anchors = _ca(cluster, "creds")
    anchors_file = cluster.tmp / "anchors.pem"
    anchors_file.write_bytes(anchors)
    _, port = await go_sentry(cluster, dapr_bins, creds)
    outcomes = {}
    for key in ("p256", "ed25519", "rsa"):
        run = await asyncio.to_thread(
            run_go,
            go_bins_light,
            "sentry-client",
            "-sentry-address",
            f"127.0.0.1:{port}",
            "-trust-anchors-file",
            str(anchors_file),
            "-control-plane-trust-domain",
            "localhost",
            "-app-id",
            "myapp",
            "-key",
            key,
        )
        err = run.result.get("error")
        outcomes[key] = (run.returncode, err["code"] if err else "", err["message"] if err else "")
    assert outcomes == {
        "p256": (0, "", ""),
        "ed25519": (3, "Internal", "failed to sign certificate"),
        "rsa": (3, "Internal", "failed to sign certificate"),
    }
