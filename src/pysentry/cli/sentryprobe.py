"""Does the Sentry at an address serve the bundle on disk? One real ``SignCertificate`` call.

The TLS handshake already proves Sentry's serving certificate chains to ``ca.crt``; the signed
chain then shows which issuer Sentry signs with, compared with ``issuer.crt``. Both files are read
strictly (:func:`pysentry.pki.pem.strict_certificates`): with a damaged one the probe is not tried,
since a shorter bundle read around the damage proves nothing about the files.
"""

from __future__ import annotations

import asyncio
import socket
from datetime import datetime, timedelta

from cryptography import x509

from pysentry.cli.backend import Credentials
from pysentry.cli.findings import Finding, Status
from pysentry.credentials import CA_FILENAME, ISSUER_CERT_FILENAME
from pysentry.errors import PysentryError
from pysentry.pki.csr import build_csr
from pysentry.pki.keys import generate_key
from pysentry.pki.pem import PemError, strict_certificates

PROBE_APP_ID = "dapr-mtls-check"
CONNECT_TIMEOUT_S = 1.0


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return (host.strip("[]") or "127.0.0.1"), int(port)


async def _sign(address: str, anchors: tuple[x509.Certificate, ...]) -> tuple[object, ...]:
    from pysentry.security.sentry_client import SentryClient  # grpclib + protobuf: load lazily

    client = SentryClient(address, anchors, attempts=1, attempt_timeout=timedelta(seconds=5))
    return await client.sign(build_csr(generate_key()), app_id=PROBE_APP_ID, namespace="default")


def probe_sentry(address: str, creds: Credentials, *, explicit: bool, now: datetime) -> Finding:
    """FAIL when an explicitly named Sentry does not serve this bundle (WARN for the default)."""
    name = f"Sentry at {address} serves this bundle"
    problem = Status.FAIL if explicit else Status.WARN
    parsed = []
    for file, pem in ((CA_FILENAME, creds.ca_pem), (ISSUER_CERT_FILENAME, creds.issuer_pem)):
        try:
            parsed.append(strict_certificates(pem, "file"))
        except PemError as err:
            return Finding(name, Status.SKIP, f"not tried: {file} does not parse: {err.problem}")
    anchors, issuer = parsed
    try:
        host, port = _split(address)
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except (OSError, ValueError) as err:
        if explicit:
            return Finding(name, Status.FAIL, f"cannot connect: {err}")
        return Finding(name, Status.SKIP, "no Sentry listening (use --sentry-address to name one)")
    try:
        chain = asyncio.run(_sign(address, anchors))
    except (PysentryError, OSError, ValueError) as err:
        return Finding(name, problem, f"signing a test certificate failed: {err}")
    if len(chain) < 2 or chain[1] != issuer[0]:
        return Finding(
            name,
            problem,
            f"Sentry signs with another issuer than {ISSUER_CERT_FILENAME}: "
            "it has not loaded this directory (yet?)",
        )
    return Finding(
        name,
        Status.OK,
        f"TLS verified against {CA_FILENAME}; test leaf signed by {ISSUER_CERT_FILENAME}",
    )
