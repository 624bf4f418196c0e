"""``dapr mtls export``: private modes whatever the umask, existing files, and refusals that write
nothing (no directory created, no file touched in the source or the target)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from pysentry.testing import TestCA
from tests.integration.cli.conftest import Dapr, give_to_nobody, run_dapr_forked, tree_state
from tests.integration.cli.damage import CORRUPTIONS, assert_refused, two_roots

PREFIX = "error exporting trust chain certs: "


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask-022", "umask-000"])
def test_export_creates_private_directories_whatever_the_umask(
    dapr: Dapr, certs: Path, tmp_path: Path, umask: int
) -> None:
    two_roots(certs)
    out = tmp_path / "a" / "b" / "out"
    result = dapr("mtls", "export", "-o", str(out), umask=umask)
    assert result.returncode == 0, result.output
    assert result.stdout.startswith(f"✅  Trust certs successfully exported to {out}\n")
    for directory in (tmp_path / "a", tmp_path / "a" / "b", out):
        assert _mode(directory) == 0o700, directory
    assert sorted(p.name for p in out.iterdir()) == ["ca.crt", "issuer.crt", "issuer.key"]
    for name in ("ca.crt", "issuer.crt", "issuer.key"):
        assert _mode(out / name) == 0o600
        assert (out / name).read_bytes() == (certs / name).read_bytes()


def test_export_into_an_existing_directory_replaces_the_files_and_says_so(
    dapr: Dapr, certs: Path, tmp_path: Path
) -> None:
    two_roots(certs)
    out = tmp_path / "existing"
    out.mkdir()
    out.chmod(0o755)
    (out / "ca.crt").write_bytes(b"old root")
    (out / "ca.crt").chmod(0o644)
    (out / "notes.txt").write_text("mine")
    notes = tree_state(out)["notes.txt"]
    result = dapr("mtls", "export", "-o", str(out))
    assert result.returncode == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"ℹ️  Replaced the existing ca.crt in {out}"  # noqa: RUF001 - Dapr's emoji
    assert lines[1] == f"✅  Trust certs successfully exported to {out}"
    assert _mode(out) == 0o755  # an existing directory is not ours to change
    assert (out / "ca.crt").read_bytes() == (certs / "ca.crt").read_bytes()
    assert _mode(out / "ca.crt") == 0o600
    assert tree_state(out)["notes.txt"] == notes
    again = dapr("mtls", "export", "-o", str(out))
    assert "Replaced the existing ca.crt, issuer.crt, issuer.key in" in again.stdout


@pytest.mark.parametrize("problem", ["bad-base64", "truncated", "mismatched-key", "empty-key"])
def test_export_refuses_damaged_credentials_and_writes_nothing(
    dapr: Dapr, certs: Path, tmp_path: Path, problem: str
) -> None:
    two_roots(certs)
    if problem == "mismatched-key":
        (certs / "issuer.key").write_bytes(TestCA.create().bundle.issuer_key_pem())
        expected = (
            f"issuer.key {str(certs / 'issuer.key')!r}: does not match the issuer certificate in "
            f"issuer.crt {str(certs / 'issuer.crt')!r}"
        )
    elif problem == "empty-key":
        (certs / "issuer.key").write_bytes(b"")
        expected = f"issuer.key {str(certs / 'issuer.key')!r}: private key is empty"
    else:
        damage, fragment = CORRUPTIONS[problem]
        (certs / "ca.crt").write_bytes(damage((certs / "ca.crt").read_bytes()))
        expected = f"ca.crt {str(certs / 'ca.crt')!r}: {fragment}"
    before = tree_state(certs.parent)
    out = tmp_path / "out"
    result = dapr("mtls", "export", "-o", str(out))
    assert_refused(result, PREFIX + expected)
    assert not out.exists()
    assert tree_state(certs.parent) == before


def test_export_refuses_a_target_that_is_not_a_file(
    dapr: Dapr, certs: Path, tmp_path: Path
) -> None:
    two_roots(certs)
    out = tmp_path / "out"
    (out / "issuer.key").mkdir(parents=True)
    (out / "ca.crt").write_bytes(b"keep me")
    before = tree_state(out)
    result = dapr("mtls", "export", "-o", str(out))
    assert_refused(result, f"{PREFIX}{str(out / 'issuer.key')!r} exists and is not a file")
    assert tree_state(out) == before
    itself = dapr("mtls", "export", "-o", str(certs))
    assert_refused(itself, f"{PREFIX}{str(certs)!r} is the credentials directory itself")


def test_export_refuses_an_unreadable_key_as_an_unprivileged_user(nobody_home: Path) -> None:
    certs = nobody_home / ".dapr" / "certs"
    two_roots(certs)
    give_to_nobody(nobody_home)
    (certs / "issuer.key").chmod(0)
    before = tree_state(nobody_home)
    result = run_dapr_forked(nobody_home, "mtls", "export", "-o", str(nobody_home / "out"))
    assert_refused(
        result, f"{PREFIX}issuer.key {str(certs / 'issuer.key')!r}: permission denied; run"
    )
    assert tree_state(nobody_home) == before
