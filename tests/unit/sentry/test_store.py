"""The file store: none / all / some of the three files, and no overwrites."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pysentry.errors import InvalidBundle
from pysentry.pki.bundle import CaBundle
from pysentry.sentry.store import CredentialPaths, FileStore, IncompleteCredentials
from pysentry.testing import TestCA

NOW = datetime.now(UTC)


def store_in(directory: Path) -> FileStore:
    return FileStore(
        CredentialPaths(directory / "ca.crt", directory / "issuer.crt", directory / "issuer.key")
    )


def test_save_then_load(tmp_path: Path) -> None:
    store = store_in(tmp_path / "a" / "certs")
    assert store.check_complete() is False
    bundle = CaBundle.generate("cluster.local", "default", now=NOW)
    store.save(bundle)
    assert stat.S_IMODE((tmp_path / "a" / "certs").stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in store.paths.all())
    assert store.check_complete() is True
    loaded = store.load(now=NOW)
    assert loaded.anchors_pem() == bundle.anchors_pem()
    with pytest.raises(InvalidBundle, match="refusing to overwrite"):
        store.save(CaBundle.generate("cluster.local", "default", now=NOW))
    assert store.load(now=NOW).anchors_pem() == bundle.anchors_pem()


def test_partial_and_invalid(tmp_path: Path) -> None:
    TestCA.create().write_credentials(tmp_path)
    store = store_in(tmp_path)
    (tmp_path / "issuer.crt").unlink()
    with pytest.raises(IncompleteCredentials) as info:
        store.check_complete()
    message = str(info.value)
    assert repr(str(tmp_path / "issuer.crt")) in message
    assert repr(str(tmp_path / "ca.crt")) in message and "remove all three files" in message
    with pytest.raises(InvalidBundle, match="refusing to overwrite"):
        store.save(CaBundle.generate("cluster.local", "default", now=NOW))
    (tmp_path / "issuer.crt").write_text("nope")
    with pytest.raises(InvalidBundle, match="failed to verify CA bundle: "):
        store.load(now=NOW)


def test_directories_are_deduplicated(tmp_path: Path) -> None:
    paths = CredentialPaths(tmp_path / "ca.crt", tmp_path / "issuer.crt", tmp_path / "k" / "i.key")
    assert paths.directories() == (tmp_path, tmp_path / "k")
