"""``dapr init``, ``dapr mtls``, ``dapr mtls expiry`` and ``dapr mtls export`` as subprocesses."""

from __future__ import annotations

import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pysentry.pki.pem import load_certificates
from pysentry.testing import TestCA
from tests.integration.cli.conftest import Dapr, Result
from tests.integration.cli.damage import bad_base64, two_roots


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_creates_home_and_is_idempotent(dapr: Dapr, home: Path, certs: Path) -> None:
    first = dapr("init")
    assert first.returncode == 0, first.output
    assert "nothing to download" in first.stdout
    assert certs.is_dir() and _mode(certs) == 0o700
    config = home / ".dapr" / "config.yaml"
    assert "kind: Configuration" in config.read_text()
    assert "enabled: false" in config.read_text()

    config.write_text(config.read_text().replace("enabled: false", "enabled: true"))
    (certs / "ca.crt").write_bytes(b"keep me")
    second = dapr("init")
    assert second.returncode == 0, second.output
    assert "Kept existing configuration" in second.stdout
    assert "Kept existing credentials directory" in second.stdout
    assert "enabled: true" in config.read_text()
    assert (certs / "ca.crt").read_bytes() == b"keep me"


def test_mtls_status_follows_the_config(dapr: Dapr, home: Path, tmp_path: Path) -> None:
    assert dapr("init").returncode == 0
    config = home / ".dapr" / "config.yaml"
    off = dapr("mtls")
    assert off.returncode == 0
    assert off.stdout.startswith("Mutual TLS is disabled in your self-hosted configuration")
    on = tmp_path / "on.yaml"
    on.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nspec:\n  mtls:\n    enabled: true\n"
    )
    result = dapr("mtls", "--config", str(on))
    assert result.returncode == 0
    assert result.stdout.strip() == f"Mutual TLS is enabled in your self-hosted configuration {on}"
    missing = dapr("mtls", "--config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and missing.stderr.startswith("error: configuration file")
    assert "Traceback" not in missing.stderr
    config.write_text("spec:\n  mtls:\n    workloadCertTTL: 3d\n")
    bad = dapr("mtls")
    assert bad.returncode == 2 and "WorkloadCertTTL" in bad.stderr
    assert "Traceback" in dapr("mtls", "--debug").stderr


def test_expiry_prints_dapr_format(dapr: Dapr, certs: Path) -> None:
    missing = dapr("mtls", "expiry")
    assert missing.returncode == 1
    missing_text = f"error: ca.crt {str(certs / 'ca.crt')!r}: file does not exist"
    assert missing.stderr.startswith(missing_text)
    certs.mkdir(parents=True)
    ca = TestCA.create("cluster.local", ttl=timedelta(days=10))
    ca.write_credentials(certs)
    result = dapr("mtls", "expiry")
    assert result.returncode == 0, result.output
    not_after = ca.root_cert.not_valid_after_utc
    match = re.fullmatch(
        r"Root certificate expires in (\d+) hours\. Expiry date: "
        r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \+0000 UTC\n",
        result.stdout,
    )
    assert match, result.stdout
    assert match.group(2) == not_after.strftime("%Y-%m-%d %H:%M:%S")
    expected = int((not_after - datetime.now(UTC)).total_seconds() // 3600)
    assert int(match.group(1)) in (expected, expected - 1)


def test_expiry_with_issuer_credentials_reads_first_root(dapr: Dapr, tmp_path: Path) -> None:
    first, second = TestCA.create(ttl=timedelta(days=3)), TestCA.create(ttl=timedelta(days=30))
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "ca.crt").write_bytes(first.anchors_pem() + second.anchors_pem())
    result = dapr("mtls", "expiry", "--issuer-credentials", str(creds))
    assert result.returncode == 0
    assert re.match(r"Root certificate expires in (71|72) hours\.", result.stdout), result.stdout
    (creds / "ca.crt").write_bytes(
        b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
    )
    broken = dapr("mtls", "expiry", "--issuer-credentials", str(creds))
    assert broken.returncode == 1 and broken.stderr.startswith("error: ")


def test_export_copies_the_three_files_0600(dapr: Dapr, certs: Path, tmp_path: Path) -> None:
    certs.mkdir(parents=True)
    TestCA.create().write_credentials(certs)
    out = tmp_path / "exported" / "deep"
    result = dapr("mtls", "export", "-o", str(out))
    assert result.returncode == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"✅  Trust certs successfully exported to {out}"
    # TestCA roots live 30 days: Dapr's 30-day expiry warning (A.6) follows the export.
    assert lines[1].startswith(
        "⚠  Dapr root certificate of your self-hosted installation expires in 29 days. "
    )
    assert lines[2] == (
        " Please see docs.dapr.io for certificate renewal instructions to avoid service "
        "interruptions."
    )
    for name in ("ca.crt", "issuer.crt", "issuer.key"):
        assert (out / name).read_bytes() == (certs / name).read_bytes()
        assert _mode(out / name) == 0o600
    assert load_certificates((out / "ca.crt").read_bytes())
    # Existing files are replaced, and their mode is tightened to 0600.
    (out / "issuer.key").write_bytes(b"old")
    (out / "issuer.key").chmod(0o644)
    assert dapr("mtls", "export", "--out", str(out)).returncode == 0
    assert _mode(out / "issuer.key") == 0o600
    assert (out / "issuer.key").read_bytes() == (certs / "issuer.key").read_bytes()


def test_export_errors_exit_nonzero(dapr: Dapr, certs: Path, tmp_path: Path) -> None:
    missing = dapr("mtls", "export", "-o", str(tmp_path / "x"))
    assert missing.returncode == 1 and "ca.crt" in missing.stderr
    assert "file does not exist; start Sentry" in missing.stderr
    assert not (tmp_path / "x").exists()  # nothing is created before the input is read
    certs.mkdir(parents=True)
    TestCA.create().write_credentials(certs)
    blocker = tmp_path / "file"
    blocker.write_text("")
    bad = dapr("mtls", "export", "-o", str(blocker / "sub"))
    assert bad.returncode == 1 and bad.stderr.startswith("error: error exporting trust chain certs")
    assert "Traceback" not in bad.stderr


def test_kubernetes_flag_without_a_kubeconfig_names_the_fix(dapr: Dapr) -> None:
    """(The cluster itself: tests/k8s/test_cli_read.py.)"""
    result = dapr("mtls", "-k", env={"KUBECONFIG": ""})
    assert result == Result(
        1,
        "",
        "error: error checking mTLS: no kubeconfig: KUBECONFIG is not set and ~/.kube/config "
        "does not exist; set KUBECONFIG to your cluster's kubeconfig (or drop -k for "
        "self-hosted mode)\n",
    )


def test_mtls_status_names_a_damaged_ca_crt_instead_of_checking_around_it(
    dapr: Dapr, certs: Path
) -> None:
    """The PostRun expiry check reads strictly: a damaged block is a warning naming the file."""
    assert dapr("init").returncode == 0
    two_roots(certs)
    ca_file = certs / "ca.crt"
    ca_file.write_bytes(bad_base64(ca_file.read_bytes()))
    result = dapr("mtls")
    assert result.returncode == 0, result.output
    assert result.stdout.startswith("Mutual TLS is disabled in your self-hosted configuration")
    assert (
        f"cannot check the root certificate's expiry: ca.crt {str(ca_file)!r}: PEM block #2 "
        "('CERTIFICATE') is damaged" in result.output
    )
    ca_file.unlink()  # no ca.crt at all: silent, as Dapr
    quiet = dapr("mtls")
    assert quiet.returncode == 0 and "expiry" not in quiet.output, quiet.output
