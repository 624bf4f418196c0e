"""Trust anchors: DAPR_TRUST_ANCHORS and a hot-reloaded file (real files, real watchfiles)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pysentry.errors import ConfigError, InvalidBundle
from pysentry.security.anchors import Anchors, FileAnchors, StaticAnchors
from pysentry.testing import TestCA

GARBAGE = b"-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n"


def _write(path: Path, data: bytes) -> None:
    """Replace atomically, as editors and `kubectl cp` do (write a temp file, rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def test_static_from_pem_with_several_roots() -> None:
    a, b = TestCA.create("public"), TestCA.create("cluster.local")
    anchors = StaticAnchors.from_pem(a.anchors_pem() + b"\n# comment\n" + b.anchors_pem())
    assert anchors.current() == (a.root_cert, b.root_cert)
    assert anchors.pem() == a.anchors_pem() + b.anchors_pem()
    assert StaticAnchors.from_env({"DAPR_TRUST_ANCHORS": a.anchors_pem().decode()}) is not None
    assert StaticAnchors.from_env({}) is None


@pytest.mark.parametrize(
    ("pem", "message"),
    [
        (b"", r"invalid trust anchors in DAPR_TRUST_ANCHORS: the value is empty, expected PEM"),
        (b"hello", r"no PEM 'CERTIFICATE' block found"),
        (GARBAGE, r"invalid trust anchors in DAPR_TRUST_ANCHORS: "),
    ],
    ids=["empty", "not-pem", "broken-certificate"],
)
def test_static_bad_pem_is_a_clear_error(pem: bytes, message: str) -> None:
    with pytest.raises(InvalidBundle, match=message):
        StaticAnchors.from_pem(pem)


def _cut_second(pem: bytes) -> bytes:
    second = pem.index(b"-----BEGIN", 1)
    return pem[: second + (len(pem) - second) // 2]


def test_static_cut_second_root_is_refused_not_dropped() -> None:
    """Go's decoder would skip the cut root and trust only the first one, silently."""
    a, b = TestCA.create("public"), TestCA.create("public")
    cut = _cut_second(a.anchors_pem() + b.anchors_pem())
    with pytest.raises(
        InvalidBundle,
        match=r"^invalid trust anchors in DAPR_TRUST_ANCHORS: PEM block #2 \('CERTIFICATE'\) has "
        r"no END line: the value is truncated or the block is damaged; set DAPR_TRUST_ANCHORS "
        r"to the complete CA bundle \(ca\.crt\) again, keeping its newlines$",
    ):
        StaticAnchors.from_env({"DAPR_TRUST_ANCHORS": cut.decode()})
    flat = a.anchors_pem().replace(b"\n", b" ")  # newlines lost by quoting
    with pytest.raises(InvalidBundle, match=r"text follows the dashes of its BEGIN line"):
        StaticAnchors.from_pem(flat)
    key = a.anchors_pem() + b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    with pytest.raises(InvalidBundle, match=r"PEM block #2 is a 'PRIVATE KEY', not a"):
        StaticAnchors.from_pem(key)


def test_file_damaged_or_not_regular_at_start(tmp_path: Path) -> None:
    a, b = TestCA.create("public"), TestCA.create("public")
    path = tmp_path / "ca.crt"
    path.write_bytes(_cut_second(a.anchors_pem() + b.anchors_pem()))
    with pytest.raises(
        InvalidBundle,
        match=r"^invalid trust anchors in file '.*/ca\.crt': PEM block #2 \('CERTIFICATE'\) has "
        r"no END line: the file is truncated .*; copy the complete CA bundle \(ca\.crt\) into it",
    ):
        FileAnchors(path)
    path.unlink()
    os.mkfifo(path)  # would block a plain read() forever
    with pytest.raises(
        ConfigError, match=r"^trust anchors file '.*/ca\.crt': is a named pipe \(FIFO\)"
    ):
        FileAnchors(path)


def test_file_missing_or_broken_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"trust anchors file '.*/ca.crt' not found"):
        FileAnchors(tmp_path / "ca.crt")
    (tmp_path / "ca.crt").write_bytes(GARBAGE)
    with pytest.raises(InvalidBundle, match=r"invalid trust anchors in file '.*/ca.crt'"):
        FileAnchors(tmp_path / "ca.crt")


@pytest.fixture
async def watched(tmp_path: Path) -> AsyncIterator[tuple[FileAnchors, asyncio.Queue[Anchors]]]:
    path = tmp_path / "ca.crt"
    path.write_bytes(TestCA.create("public").anchors_pem())
    anchors = FileAnchors(path)
    updates: asyncio.Queue[Anchors] = asyncio.Queue()
    anchors.subscribe(updates.put_nowait)
    task = asyncio.create_task(anchors.run())
    await asyncio.wait_for(anchors.wait_ready(), timeout=5)
    yield anchors, updates
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def _until(predicate: object, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.02)


async def test_file_hot_reload_keeps_last_good_and_recovers(
    watched: tuple[FileAnchors, asyncio.Queue[Anchors]], caplog: pytest.LogCaptureFixture
) -> None:
    anchors, updates = watched
    first = anchors.current()
    new_ca, extra = TestCA.create("public"), TestCA.create("public")

    _write(anchors.path, new_ca.anchors_pem() + extra.anchors_pem())  # a rotation: two roots
    got = await asyncio.wait_for(updates.get(), timeout=5)
    assert got == (new_ca.root_cert, extra.root_cert) == anchors.current()
    assert anchors.pem() == new_ca.anchors_pem() + extra.anchors_pem()
    assert got != first

    caplog.set_level(logging.ERROR, logger="pysentry.security")
    _write(anchors.path, GARBAGE)  # broken: keep the last good bundle and say why
    await _until(lambda: anchors.last_error is not None)
    assert anchors.current() == got
    assert "invalid trust anchors in file" in (anchors.last_error or "")
    assert any(
        r.getMessage().startswith("Failed to reload trust anchors, keeping the previous ones")
        for r in caplog.records
    )
    assert updates.empty()

    caplog.clear()
    _write(anchors.path, _cut_second(new_ca.anchors_pem() + extra.anchors_pem()))
    await _until(lambda: "PEM block #2" in (anchors.last_error or ""))
    assert "PEM block #2 ('CERTIFICATE') has no END line" in (anchors.last_error or "")
    assert anchors.current() == got  # not the one-root bundle Go's decoder would read
    assert any("PEM block #2" in r.getMessage() for r in caplog.records)
    assert updates.empty()

    _write(anchors.path, new_ca.anchors_pem())  # fixed
    assert await asyncio.wait_for(updates.get(), timeout=5) == (new_ca.root_cert,)
    assert anchors.last_error is None
    assert anchors.reloads == 2


async def test_unchanged_content_does_not_notify(
    watched: tuple[FileAnchors, asyncio.Queue[Anchors]],
) -> None:
    anchors, updates = watched
    same = anchors.path.read_bytes()
    _write(anchors.path, same)
    marker = anchors.path.with_name("other.txt")
    marker.write_bytes(b"x")  # unrelated file in the same directory
    await asyncio.sleep(0.5)
    assert updates.empty()
    assert anchors.reloads == 0


async def test_deleted_file_keeps_the_anchors(
    watched: tuple[FileAnchors, asyncio.Queue[Anchors]],
) -> None:
    anchors, updates = watched
    before = anchors.current()
    anchors.path.unlink()
    await _until(lambda: anchors.last_error is not None)
    assert "not found" in (anchors.last_error or "")
    assert anchors.current() == before
    assert updates.empty()
