"""The Dapr docs' "bring your own certificates" openssl recipe, shared by the integration tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

_DN = """\
[req]
distinguished_name = req_distinguished_name
x509_extensions = v3_req
prompt = no

[req_distinguished_name]
C = US
ST = VA
L = Daprville
O = dapr.io/sentry
OU = dapr.io/sentry
CN = cluster.local

[v3_req]
basicConstraints = critical, CA:true{pathlen}
keyUsage = critical, digitalSignature, cRLSign, keyCertSign
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = @alt_names

[alt_names]
DNS.1 = cluster.local
"""
ROOT_CONF = _DN.format(pathlen="")
ISSUER_CONF = _DN.format(pathlen=", pathlen:0")


def sh(cwd: Path, command: str) -> str:
    done = subprocess.run(
        command, shell=True, cwd=cwd, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, f"{command!r} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def openssl_recipe(workdir: Path) -> None:
    """Run the recipe (ECDSA P-256 root and issuer) verbatim apart from file names: ``workdir``
    gets ``ca.crt``, ``issuer.crt``, ``issuer.key`` (SEC1 EC key) and ``root.key``."""
    (workdir / "root.conf").write_text(ROOT_CONF)
    (workdir / "issuer.conf").write_text(ISSUER_CONF)
    for command in (
        "openssl ecparam -genkey -name prime256v1 | openssl ec -out root.key",
        "openssl req -new -nodes -sha256 -key root.key -out root.csr -config root.conf"
        " -extensions v3_req",
        "openssl x509 -req -sha256 -days 365 -in root.csr -signkey root.key -outform PEM"
        " -out ca.crt -extensions v3_req -extfile root.conf",
        "openssl ecparam -genkey -name prime256v1 | openssl ec -out issuer.key",
        "openssl req -new -sha256 -key issuer.key -out issuer.csr -config issuer.conf"
        " -extensions v3_req",
        "openssl x509 -req -in issuer.csr -CA ca.crt -CAkey root.key -CAcreateserial"
        " -outform PEM -out issuer.crt -days 365 -sha256 -extensions v3_req"
        " -extfile issuer.conf",
    ):
        sh(workdir, command)
