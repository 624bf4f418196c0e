"""``dapr mtls check``: the health report passes on good credentials and fails on bad ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pysentry.fileio import write_atomic
from pysentry.pki.keys import dump_private_key, generate_key
from pysentry.pki.pem import dump_certificates
from pysentry.pki.profiles import issuer_certificate, root_certificate
from pysentry.spiffe import TrustDomain
from tests.integration.cli.conftest import Dapr, tree_state
from tests.integration.cli.damage import CORRUPTIONS, two_roots


def _write(
    certs: Path, *, root_ttl: timedelta, issuer_start: timedelta, issuer_ttl: timedelta
) -> None:
    """A root valid ``root_ttl`` from 10 days ago; an issuer valid from now+issuer_start."""
    now = datetime.now(UTC)
    td = TrustDomain("cluster.local")
    root_key, issuer_key = generate_key(), generate_key()
    root = root_certificate(root_key, td, now=now - timedelta(days=10), ttl=root_ttl)
    issuer = issuer_certificate(
        issuer_key.public_key(),
        root_cert=root,
        root_key=root_key,
        trust_domain=td,
        namespace="default",
        now=now + issuer_start,
        ttl=issuer_ttl,
    )
    certs.mkdir(parents=True, exist_ok=True)
    write_atomic(certs / "ca.crt", dump_certificates((root,)))
    write_atomic(certs / "issuer.crt", dump_certificates((issuer,)))
    write_atomic(certs / "issuer.key", dump_private_key(issuer_key))


def _row(output: str, check: str) -> str:
    return next(line for line in output.splitlines() if check in line)


def test_check_passes_on_fresh_credentials(dapr: Dapr) -> None:
    assert dapr("mtls", "renew-certificate").returncode == 0
    result = dapr("mtls", "check", "--offline")
    assert result.returncode == 0, result.output
    for check in (
        "issuer chain signed by ca.crt",
        "issuer key matches issuer.crt",
        "Sentry accepts the bundle",
        "root expiry",
        "issuer expiry",
        "leaves fit in the issuer",
    ):
        assert " ok " in _row(result.stdout, check), check
    assert "✅  All checks passed" in result.stdout


def test_check_fails_on_an_expired_issuer(dapr: Dapr, certs: Path) -> None:
    _write(
        certs,
        root_ttl=timedelta(days=400),
        issuer_start=timedelta(days=-5),
        issuer_ttl=timedelta(days=2),
    )
    result = dapr("mtls", "check", "--offline")
    assert result.returncode == 1
    assert "FAIL" in _row(result.stdout, "issuer expiry") and "expired on" in _row(
        result.stdout, "issuer expiry"
    )
    assert "FAIL" in _row(result.stdout, "Sentry accepts the bundle")
    assert "FAIL" in _row(result.stdout, "leaves fit in the issuer")
    assert " ok " in _row(result.stdout, "root expiry")
    assert result.stderr.startswith("error: ") and "issuer expiry" in result.stderr


def test_check_warns_on_horizons_and_short_issuer(dapr: Dapr, certs: Path, tmp_path: Path) -> None:
    # Root ends in ~20 days (warn), issuer in 10 hours: leaves of 24h would be cut short.
    _write(
        certs,
        root_ttl=timedelta(days=30),
        issuer_start=timedelta(0),
        issuer_ttl=timedelta(hours=10),
    )
    result = dapr("mtls", "check", "--offline")
    assert result.returncode == 1, result.output  # an issuer with < 1 day left is a failure
    assert "warn" in _row(result.stdout, "root expiry") and "within 30 days" in result.stdout
    assert "FAIL" in _row(result.stdout, "issuer expiry")
    leaves = _row(result.stdout, "leaves fit in the issuer")
    assert "warn" in leaves and "workloadCertTTL" in leaves
    # With a shorter workloadCertTTL the leaves fit again.
    config = tmp_path / "c.yaml"
    config.write_text("spec:\n  mtls:\n    workloadCertTTL: 10m\n")
    short = dapr("mtls", "check", "--offline", "--config", str(config))
    assert " ok " in _row(short.stdout, "leaves fit in the issuer")
    # A TTL below the clock skew: leaves are due for renewal the moment they are issued.
    assert "warn" in _row(short.stdout, "renewal after issuance")
    assert "allowedClockSkew 15m" in _row(short.stdout, "renewal after issuance")


def test_check_mismatched_key_and_unreachable_sentry(dapr: Dapr, certs: Path) -> None:
    _write(
        certs,
        root_ttl=timedelta(days=400),
        issuer_start=timedelta(0),
        issuer_ttl=timedelta(days=60),
    )
    write_atomic(certs / "issuer.key", dump_private_key(generate_key()))
    result = dapr("mtls", "check", "--sentry-address", "127.0.0.1:1")
    assert result.returncode == 1
    assert "FAIL" in _row(result.stdout, "issuer key matches issuer.crt")
    assert (
        "FAIL" in _row(result.stdout, "Sentry at 127.0.0.1:1") and "cannot connect" in result.stdout
    )
    assert "note" in _row(result.stdout, "issuer expiry")  # 60 days: inside the 90-day horizon


def test_check_reports_a_truncated_block_and_writes_nothing(dapr: Dapr, certs: Path) -> None:
    two_roots(certs)
    damage, fragment = CORRUPTIONS["truncated"]
    (certs / "ca.crt").write_bytes(damage((certs / "ca.crt").read_bytes()))
    (certs / "issuer.key").write_bytes(b"")
    before = tree_state(certs.parent)
    result = dapr("mtls", "check", "--offline")
    assert result.returncode == 1
    assert result.stderr.startswith("error: 3 check(s) failed: ca.crt parses, issuer.key parses")
    row = _row(result.stdout, "ca.crt parses")
    assert "FAIL" in row and fragment in row  # a cut block is not read as a shorter bundle
    assert "FAIL" in _row(result.stdout, "issuer.key parses")
    assert "Traceback" not in result.output
    assert tree_state(certs.parent) == before


def test_check_does_not_probe_sentry_with_a_damaged_ca_crt(dapr: Dapr, certs: Path) -> None:
    """The probe reads ca.crt strictly too: no handshake against the roots around the damage."""
    two_roots(certs)
    damage, fragment = CORRUPTIONS["bad-der"]
    (certs / "ca.crt").write_bytes(damage((certs / "ca.crt").read_bytes()))
    result = dapr("mtls", "check", "--sentry-address", "127.0.0.1:1")
    assert result.returncode == 1
    row = _row(result.stdout, "Sentry at 127.0.0.1:1")
    assert "skip" in row.lower() and "not tried: ca.crt does not parse" in row, row
    assert fragment in row and "cannot connect" not in result.stdout
