"""``dapr init`` with Dapr's flags: ``--enable-mtls`` writes mTLS on, the three certificate flags
install credentials for Sentry, container/Kubernetes flags are named in one warning."""

from __future__ import annotations

from pathlib import Path

from pysentry.cli.home import DEFAULT_CONFIG
from pysentry.testing import TestCA
from tests.integration.cli.conftest import Dapr


def test_enable_mtls_writes_mtls_on(dapr: Dapr, home: Path) -> None:
    result = dapr("init", "--enable-mtls", "--slim", "--runtime-version", "latest")
    assert result.returncode == 0, result.output
    config = home / ".dapr" / "config.yaml"
    assert "    enabled: true\n" in config.read_text()
    assert "Wrote default configuration" in result.stdout and "(mTLS enabled)" in result.stdout
    mtls = dapr("mtls")
    assert mtls.stdout.startswith("Mutual TLS is enabled in your self-hosted configuration")
    assert "⚠" not in result.stdout


def test_enable_mtls_switches_the_untouched_default_only(dapr: Dapr, home: Path) -> None:
    assert dapr("init").returncode == 0
    config = home / ".dapr" / "config.yaml"
    assert config.read_text() == DEFAULT_CONFIG
    switched = dapr("init", "--enable-mtls")
    assert "Enabled mTLS in the default configuration" in switched.stdout
    assert "    enabled: true\n" in config.read_text()
    mine = "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nspec:\n  mtls:\n    enabled: false\n"
    config.write_text(mine)
    kept = dapr("init", "--enable-mtls")
    assert kept.returncode == 0 and config.read_text() == mine
    assert "set spec.mtls.enabled to true in it" in kept.stdout


def test_certificate_flags_install_the_credentials(dapr: Dapr, tmp_path: Path, certs: Path) -> None:
    ca = TestCA.create("cluster.local")
    given = tmp_path / "given"
    given.mkdir()
    ca.write_credentials(given)
    args = (
        *("--ca-root-certificate", str(given / "ca.crt")),
        *("--issuer-private-key", str(given / "issuer.key")),
        *("--issuer-public-certificate", str(given / "issuer.crt")),
    )
    result = dapr("init", *args)
    assert result.returncode == 0, result.output
    for name in ("ca.crt", "issuer.crt", "issuer.key"):
        assert (certs / name).read_bytes() == (given / name).read_bytes()
    again = dapr("init", *args)
    assert again.returncode == 1
    assert "already holds credentials, kept as they are" in again.stderr


def test_certificate_flags_go_together(dapr: Dapr, tmp_path: Path, certs: Path) -> None:
    empty = dapr("init", "--ca-root-certificate", " ")
    assert empty.returncode == 1
    assert empty.stderr == "error: non empty value of --ca-root-certificate must be provided\n"
    one = dapr("init", "--ca-root-certificate", str(tmp_path / "ca.crt"))
    assert one.returncode == 1 and "give all three" in one.stderr
    assert not (certs / "ca.crt").exists()


def test_container_and_kubernetes_flags_are_named_once(dapr: Dapr) -> None:
    result = dapr("init", "--network", "x", "--image-registry", "r", "--wait", "--set", "a=b")
    assert result.returncode == 0, result.output
    warnings = [x for x in result.stdout.splitlines() if x.startswith("⚠")]
    assert warnings == [
        "⚠  These flags apply to Dapr's containers or Kubernetes, not to pysentry's self-hosted "
        "init, and are ignored: --wait, --network, --set, --image-registry"
    ]
