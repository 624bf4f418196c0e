"""``renew-certificate`` and ``drop-old-roots`` refuse unreadable or damaged input and change
nothing on disk (same entries, modes, inodes, mtimes and bytes); a full disk changes nothing.

Issue 8 item 7: a ``ca.crt`` with one corrupt block used to be read as "no roots", and the command
wrote a ``ca.crt`` holding only the new root.
"""

from __future__ import annotations

import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from pysentry.pki.keys import dump_private_key, generate_key
from pysentry.pki.pem import load_certificates
from pysentry.testing import TestCA
from tests.integration.cli.conftest import (
    Dapr,
    give_to_nobody,
    run_dapr,
    run_dapr_forked,
    tree_state,
    without_dir_times,
)
from tests.integration.cli.damage import CORRUPTIONS, assert_refused, bad_base64, two_roots

UNCHANGED = "nothing was changed"
PROVIDED_FLAGS = ("--ca-root-certificate", "--issuer-public-certificate", "--issuer-private-key")


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_damaged_ca_crt_is_refused_and_nothing_changes(
    dapr: Dapr, certs: Path, corruption: str
) -> None:
    two_roots(certs)
    ca_file = certs / "ca.crt"
    damage, expected = CORRUPTIONS[corruption]
    ca_file.write_bytes(damage(ca_file.read_bytes()))
    before = tree_state(certs.parent)
    result = dapr("mtls", "renew-certificate")
    assert_refused(result, f"certificate rotation failed: ca.crt {str(ca_file)!r}: {expected}")
    assert UNCHANGED in result.stderr
    assert tree_state(certs.parent) == before


def _sec1_key(path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(Encoding.PEM, PrivateFormat.TraditionalOpenSSL, NoEncryption())
    )


def _given(directory: Path) -> dict[str, Path]:
    """A valid set of provided files, under names unlike ca.crt/issuer.crt/issuer.key."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = TestCA.create("cluster.local")
    files = {
        "--ca-root-certificate": directory / "root.pem",
        "--issuer-public-certificate": directory / "issuer.pem",
        "--issuer-private-key": directory / "issuer-key.pem",
        "--private-key": directory / "root-key.pem",
    }
    files["--ca-root-certificate"].write_bytes(ca.anchors_pem())
    files["--issuer-public-certificate"].write_bytes(ca.bundle.issuer_chain_pem())
    files["--issuer-private-key"].write_bytes(ca.bundle.issuer_key_pem())
    _sec1_key(files["--private-key"])
    return files


def _args(path: str, files: dict[str, Path]) -> list[str]:
    args = ["mtls", "renew-certificate"]
    if path == "private-key":
        return [*args, "--private-key", str(files["--private-key"])]
    if path == "provided":
        for flag in PROVIDED_FLAGS:
            args += [flag, str(files[flag])]
    return args


@pytest.mark.parametrize("path", ["fresh", "private-key", "provided"])
def test_every_renewal_path_refuses_a_damaged_ca_crt(
    dapr: Dapr, certs: Path, tmp_path: Path, path: str
) -> None:
    two_roots(certs)
    files = _given(tmp_path / "given")
    ca_file = certs / "ca.crt"
    ca_file.write_bytes(bad_base64(ca_file.read_bytes()))
    before = tree_state(certs.parent)
    result = dapr(*_args(path, files))
    assert_refused(result, f"certificate rotation failed: ca.crt {str(ca_file)!r}: PEM block #2")
    assert tree_state(certs.parent) == before


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_a_ca_crt_that_is_not_a_file_is_refused(dapr: Dapr, certs: Path, kind: str) -> None:
    two_roots(certs)
    ca_file = certs / "ca.crt"
    ca_file.unlink()
    if kind == "directory":
        ca_file.mkdir()
        expected = "is a directory, expected a PEM file"
    else:
        os.mkfifo(ca_file)
        expected = "is not a regular file (FIFO or device)"
    before = tree_state(certs.parent)
    result = dapr("mtls", "renew-certificate", timeout=20)  # a FIFO must not block the read
    assert_refused(result, f"ca.crt {str(ca_file)!r}: {expected}")
    assert tree_state(certs.parent) == before


def test_an_unreadable_ca_crt_is_refused_as_an_unprivileged_user(nobody_home: Path) -> None:
    certs = nobody_home / ".dapr" / "certs"
    two_roots(certs)
    give_to_nobody(nobody_home)
    (certs / "ca.crt").chmod(0)
    before = tree_state(nobody_home)
    result = run_dapr_forked(nobody_home, "mtls", "renew-certificate")
    assert_refused(
        result,
        f"certificate rotation failed: ca.crt {str(certs / 'ca.crt')!r}: permission denied; run "
        "the command as the user that owns the file",
    )
    assert tree_state(nobody_home) == before


@pytest.mark.parametrize("problem", ["truncated", "missing"])
@pytest.mark.parametrize("flag", [*PROVIDED_FLAGS, "--private-key"])
def test_a_broken_passed_file_is_named_by_its_flag_and_path(
    dapr: Dapr, certs: Path, tmp_path: Path, flag: str, problem: str
) -> None:
    two_roots(certs)
    files = _given(tmp_path / "given")
    broken = files[flag]
    if problem == "missing":
        broken.unlink()
        expected = "file does not exist; check the path"
    else:
        data = broken.read_bytes()
        broken.write_bytes(data[: len(data) // 2])
        expected = "PEM block #1 ("
    before = tree_state(certs.parent)
    result = dapr(*_args("private-key" if flag == "--private-key" else "provided", files))
    assert_refused(result, f"certificate rotation failed: {flag} {str(broken)!r}: {expected}")
    if problem == "truncated":
        assert "has no END line: the file is truncated" in result.stderr
    for name in ("ca.crt", "issuer.crt", "issuer.key"):
        assert name not in result.stderr  # the passed file is blamed, not the credentials
    assert tree_state(certs.parent) == before


def test_unreadable_passed_files_are_named_as_an_unprivileged_user(nobody_home: Path) -> None:
    certs = nobody_home / ".dapr" / "certs"
    two_roots(certs)
    files = _given(nobody_home / "given")
    give_to_nobody(nobody_home)
    before = tree_state(nobody_home)
    for flag in (*PROVIDED_FLAGS, "--private-key"):
        mode = files[flag].stat().st_mode
        files[flag].chmod(0)
        result = run_dapr_forked(
            nobody_home, *_args("private-key" if flag == "--private-key" else "provided", files)
        )
        files[flag].chmod(mode)
        assert_refused(
            result,
            f"certificate rotation failed: {flag} {str(files[flag])!r}: permission denied",
        )
    assert tree_state(nobody_home) == before


@pytest.mark.parametrize("problem", ["mismatched-key", "foreign-issuer", "root-not-self-signed"])
def test_bundle_problems_in_passed_files_name_those_files(
    dapr: Dapr, certs: Path, tmp_path: Path, problem: str
) -> None:
    two_roots(certs)
    files = _given(tmp_path / "given")
    other = TestCA.create("cluster.local")
    if problem == "mismatched-key":
        files["--issuer-private-key"].write_bytes(other.bundle.issuer_key_pem())
        flag, expected = "--issuer-private-key", "issuer key does not match issuer certificate"
    elif problem == "foreign-issuer":
        files["--issuer-public-certificate"].write_bytes(other.bundle.issuer_chain_pem())
        files["--issuer-private-key"].write_bytes(other.bundle.issuer_key_pem())
        flag, expected = "--issuer-public-certificate", "issuer chain does not belong to trust"
    else:
        files["--ca-root-certificate"].write_bytes(other.bundle.issuer_chain_pem())
        flag, expected = "--ca-root-certificate", "certificate in trust anchor is not self-signed"
    before = tree_state(certs.parent)
    result = dapr(*_args("provided", files))
    assert_refused(result, f"{flag} {str(files[flag])!r}: {expected}")
    for name in ("ca.crt", "issuer.crt", "issuer.key"):
        assert name not in result.stderr
    assert tree_state(certs.parent) == before


def test_provided_certificates_keep_the_current_root_and_leave_out_an_expired_one(
    dapr: Dapr, certs: Path, tmp_path: Path
) -> None:
    current = two_roots(certs)
    expired = TestCA.create("cluster.local", now=datetime.now(UTC) - timedelta(days=60))
    ca_file = certs / "ca.crt"
    ca_file.write_bytes(ca_file.read_bytes() + expired.anchors_pem())
    files = _given(tmp_path / "given")
    result = dapr(*_args("provided", files))
    assert result.returncode == 0, result.output
    anchors = load_certificates(ca_file.read_bytes())
    new_root = load_certificates(files["--ca-root-certificate"].read_bytes())[0]
    assert anchors[0] == new_root
    assert current.root_cert in anchors  # still verifies leaves until drop-old-roots
    assert expired.root_cert not in anchors
    assert "ca.crt now holds 3 root(s)" in result.stdout
    assert "Left out root O=cluster.local" in result.stdout and "expired" in result.stdout


def test_a_full_disk_changes_nothing(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    try:
        home = mount / "home"
        certs = home / ".dapr" / "certs"
        two_roots(certs)
        filler_path = mount / "filler"  # fill the disk, then free one page
        with filler_path.open("wb", buffering=0) as filler, pytest.raises(OSError):
            for _ in range(64):
                filler.write(b"\0" * 4096)
        size = (mount / "filler").stat().st_size
        os.truncate(mount / "filler", max(size - 4096, 0))
        before = tree_state(home)
        result = run_dapr(home, "mtls", "renew-certificate")
        assert_refused(result, f"cannot write to {str(certs)!r}: No space left on device")
        assert UNCHANGED in result.stderr
        # No file changed and no temp file is left; only the directory's mtime moved (a temp
        # file was created and removed in it).
        assert without_dir_times(tree_state(home)) == without_dir_times(before)
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_stale_temp_file_of_a_killed_run_is_removed(dapr: Dapr, certs: Path) -> None:
    two_roots(certs)
    stale = certs / ".dapr-cli.issuer.key.abcdefgh.tmp"
    stale.write_bytes(dump_private_key(generate_key()))
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = certs / ".dapr-cli.ca.crt.ijklmnop.tmp"  # maybe another run's, still in progress
    fresh.write_bytes(b"x")
    result = dapr("mtls", "renew-certificate")
    assert result.returncode == 0, result.output
    assert not stale.exists() and fresh.exists()
    assert sorted(p.name for p in certs.iterdir()) == sorted(
        [fresh.name, "ca.crt", "issuer.crt", "issuer.key"]
    )


@pytest.mark.parametrize("problem", ["bad-base64", "truncated", "mismatched-key"])
def test_drop_old_roots_refuses_damaged_credentials(dapr: Dapr, certs: Path, problem: str) -> None:
    two_roots(certs)
    if problem == "mismatched-key":
        (certs / "issuer.key").write_bytes(TestCA.create().bundle.issuer_key_pem())
        expected = "do not load, nothing was changed"
    else:
        damage, fragment = CORRUPTIONS[problem]
        (certs / "ca.crt").write_bytes(damage((certs / "ca.crt").read_bytes()))
        expected = f"ca.crt {str(certs / 'ca.crt')!r}: {fragment}"
    before = tree_state(certs.parent)
    result = dapr("mtls", "drop-old-roots")
    assert_refused(result, expected)
    if problem == "mismatched-key":
        assert "issuer.key: issuer key does not match issuer certificate" in result.stderr
    assert tree_state(certs.parent) == before


def test_drop_old_roots_rewrites_only_ca_crt(dapr: Dapr, certs: Path) -> None:
    two_roots(certs)
    before = tree_state(certs)
    result = dapr("mtls", "drop-old-roots")
    assert result.returncode == 0, result.output
    after = tree_state(certs)
    assert after["issuer.crt"] == before["issuer.crt"]
    assert after["issuer.key"] == before["issuer.key"]
    assert after["ca.crt"] != before["ca.crt"]
    assert len(load_certificates((certs / "ca.crt").read_bytes())) == 1


def test_drop_old_roots_refuses_an_unreadable_key_as_an_unprivileged_user(
    nobody_home: Path,
) -> None:
    certs = nobody_home / ".dapr" / "certs"
    two_roots(certs)
    give_to_nobody(nobody_home)
    (certs / "issuer.key").chmod(0)
    before = tree_state(nobody_home)
    result = run_dapr_forked(nobody_home, "mtls", "drop-old-roots")
    assert_refused(result, f"issuer.key {str(certs / 'issuer.key')!r}: permission denied")
    assert tree_state(nobody_home) == before
