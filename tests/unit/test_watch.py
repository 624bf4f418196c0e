"""pysentry.watch over real inotify: ready, changes, and a removed directory watched again."""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from pysentry.watch import WatchEvent, directory_changes

STEP = timedelta(milliseconds=5)


async def test_ready_then_changes_and_a_removed_directory_is_watched_again(
    tmp_path: Path,
) -> None:
    watched = tmp_path / "certs"
    watched.mkdir()
    events = directory_changes((watched,), debounce=STEP, step=STEP)
    async with asyncio.timeout(15):
        assert await anext(events) is WatchEvent.READY
        (watched / "ca.crt").write_bytes(b"1")
        assert await anext(events) is WatchEvent.CHANGED
        shutil.rmtree(watched)
        while True:  # the removal itself, maybe in more than one batch
            assert await anext(events) is WatchEvent.CHANGED
            if not watched.exists():
                break
        watched.mkdir()
        # Watched again once it exists: the re-install reports a change (it was unwatched)...
        assert await anext(events) is WatchEvent.CHANGED
        (watched / "ca.crt").write_bytes(b"2")
        # ...and later changes are seen again.
        assert await anext(events) is WatchEvent.CHANGED
    await events.aclose()


async def test_a_missing_directory_fails_at_once(tmp_path: Path) -> None:
    events = directory_changes((tmp_path / "missing",), debounce=STEP, step=STEP)
    with pytest.raises(FileNotFoundError):
        async with asyncio.timeout(10):
            await anext(events)
