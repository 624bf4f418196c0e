"""The docs' "delete the certs and restart Sentry" keeps the previous root trusted.

A real Sentry generates a CA, is stopped, its three files are deleted, and it starts again: the
new ``ca.crt`` holds the new root first and the previous root after it, so sidecars that still
hold a certificate from the old CA keep being trusted until ``dapr mtls drop-old-roots``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pysentry.pki.bundle import CaBundle
from pysentry.pki.pem import load_certificates
from tests.integration.sentry.conftest import Launcher

FILES = ("ca.crt", "issuer.crt", "issuer.key")


def _roots(creds: Path) -> list[bytes]:
    return [
        c.fingerprint(c.signature_hash_algorithm)
        for c in load_certificates((creds / "ca.crt").read_bytes())
    ]  # type: ignore[arg-type]


def test_regenerated_ca_keeps_the_previous_root(start_sentry: Launcher) -> None:
    first = start_sentry()
    creds = first.creds
    first_roots = _roots(creds)
    assert len(first_roots) == 1
    first.stop()
    for name in FILES:
        (creds / name).unlink()

    second = start_sentry(creds=creds)
    second.wait_for_log("Kept 1 previous root certificate(s) in ca.crt")
    assert "dapr mtls drop-old-roots" in second.log_text()
    roots = _roots(creds)
    assert len(roots) == 2 and roots[1] == first_roots[0] and roots[0] != first_roots[0]
    ca, cert, key = ((creds / n).read_bytes() for n in FILES)
    bundle = CaBundle.from_pem(ca, cert, key, now=datetime.now(UTC))
    assert bundle.issuer_chain[0].issuer == bundle.trust_anchors[0].subject
    second.stop()

    # A third generation keeps both earlier roots that are still valid, and no more than that.
    for name in FILES:
        (creds / name).unlink()
    third = start_sentry(creds=creds)
    third.wait_for_log("Kept 2 previous root certificate(s) in ca.crt")
    assert len(_roots(creds)) == 3
    third.stop()


def test_a_damaged_history_is_ignored(start_sentry: Launcher) -> None:
    first = start_sentry()
    creds = first.creds
    first.stop()
    for name in FILES:
        (creds / name).unlink()
    (creds / ".pysentry-previous-roots.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n")
    second = start_sentry(creds=creds)
    second.wait_for_log("Ignoring the previous roots in")
    assert len(_roots(creds)) == 1
