"""The file store: none / all / some of the three files, no overwrites, crash-atomic saves."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pysentry.credentials import (
    CredentialPaths,
    CredentialsUnavailable,
    FileStore,
    IncompleteCredentials,
    StoreEvent,
    StoreLocationError,
    StoreState,
    journal,
)
from pysentry.credentials.journal import JOURNAL_NAME
from pysentry.errors import InvalidBundle
from pysentry.pki.bundle import CaBundle
from pysentry.testing import TestCA
from tests.unprivileged import run_unprivileged

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
    loaded = store.load(now=NOW).bundle
    assert loaded.anchors_pem() == bundle.anchors_pem()
    with pytest.raises(InvalidBundle, match="refusing to overwrite"):
        store.save(CaBundle.generate("cluster.local", "default", now=NOW))
    assert store.load(now=NOW).bundle.anchors_pem() == bundle.anchors_pem()


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


def test_states(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    assert store.state() is StoreState.NONE
    TestCA.create().write_credentials(tmp_path)
    assert store.state() is StoreState.COMPLETE
    (tmp_path / "ca.crt").unlink()
    assert store.state() is StoreState.PARTIAL


def test_prepare_removes_stale_temps_and_finishes_our_own_generation(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    bundle = CaBundle.generate("cluster.local", "default", now=NOW)
    stale = tmp_path / ".issuer.key.k1ll3d_x.tmp"  # left by a killed write (older versions)
    stale.write_bytes(bundle.issuer_key_pem())
    files = [
        (store.paths.issuer_key, bundle.issuer_key_pem()),
        (store.paths.issuer_cert, bundle.issuer_chain_pem()),
        (store.paths.ca, bundle.anchors_pem()),
    ]
    # What a kill after the commit and two of the three links leaves:
    entries = [journal._Entry(t, journal.staged_path(t), journal._digest(d)) for t, d in files]
    for entry, (_, data) in zip(entries, files, strict=True):
        journal._write_new(entry.staged, data)
    journal._write_journal(tmp_path / JOURNAL_NAME, entries)
    for entry in entries[:2]:
        os.link(entry.staged, entry.target)
    assert store.state() is StoreState.PARTIAL

    notes = store.prepare()
    assert any(n.startswith("finished an interrupted CA generation") for n in notes)
    assert any(repr(str(stale)) in n for n in notes)
    assert sorted(os.listdir(tmp_path)) == ["ca.crt", "issuer.crt", "issuer.key"]
    assert store.load(now=NOW).bundle.anchors_pem() == bundle.anchors_pem()


def test_save_leaves_a_users_partial_set_alone(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_bytes(b"the user's root")
    store = store_in(tmp_path)
    with pytest.raises(InvalidBundle, match="refusing to overwrite"):
        store.save(CaBundle.generate("cluster.local", "default", now=NOW))
    assert os.listdir(tmp_path) == ["ca.crt"]
    assert store.prepare() == ()
    assert os.listdir(tmp_path) == ["ca.crt"]


def test_a_file_in_the_way_is_a_location_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    store = store_in(tmp_path / "file" / "certs")
    with pytest.raises(StoreLocationError) as info:
        store.prepare()
    assert info.value.blocker == tmp_path / "file"
    with pytest.raises(StoreLocationError) as info:
        store.save(CaBundle.generate("cluster.local", "default", now=NOW))
    assert info.value.blocker == tmp_path / "file"
    with pytest.raises(CredentialsUnavailable, match="is not a directory"):
        store.load(now=NOW)  # while running: unavailable, not fatal


def test_fifo_key_is_refused(tmp_path: Path) -> None:
    TestCA.create().write_credentials(tmp_path)
    (tmp_path / "issuer.key").unlink()
    os.mkfifo(tmp_path / "issuer.key")
    with pytest.raises(CredentialsUnavailable, match=r"issuer key '.*': is a named pipe"):
        store_in(tmp_path).load(now=NOW)


def test_unreadable_directory_is_unavailable() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="pysentry-store-"))
    try:
        workdir.chmod(0o755)
        creds = workdir / "certs"
        creds.mkdir()
        TestCA.create().write_credentials(creds)
        creds.chmod(0)

        def check() -> str:
            try:
                store_in(creds).load(now=NOW)
            except CredentialsUnavailable as err:
                return str(err)
            return "loaded"

        code, message = run_unprivileged(check)
    finally:
        shutil.rmtree(workdir)
    assert code == 0, message
    assert "permission denied" in message and repr(str(creds / "ca.crt")) in message


async def test_changes(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    events = store.changes()
    async with asyncio.timeout(10):
        assert await anext(events) is StoreEvent.WATCHING
        (tmp_path / "ca.crt").write_bytes(b"x")
        assert await anext(events) is StoreEvent.CHANGED
    await events.aclose()
