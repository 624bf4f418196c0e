"""Directory watching for hot reload (``watchfiles``): trust-anchor files, Sentry's credentials.

Directories are watched, not files: editors and ``kubectl`` replace files by rename or symlink
swap, which a watch on the file itself would miss. A watched directory that is removed takes its
watch with it, so the watch is installed again once the directory exists again.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from pathlib import Path

_MS = timedelta(milliseconds=1)
REINSTALL_POLL = timedelta(milliseconds=500)
"""How often a removed directory is looked for, to watch it again."""


class WatchEvent(enum.Enum):
    READY = "ready"
    """The watch is installed: a change after this is seen."""
    CHANGED = "changed"
    """A batch of changes happened in the directories."""


async def directory_changes(
    directories: Sequence[Path],
    *,
    debounce: timedelta,
    step: timedelta,
    force_polling: bool | None = None,
) -> AsyncIterator[WatchEvent]:
    """``READY`` once the watch is installed, then ``CHANGED`` after each batch of events in
    ``directories`` (not recursive), until cancelled. When a watched directory is removed, the
    watch is re-installed once it exists again, and ``CHANGED`` follows."""
    first = True
    while True:
        async for event in _watch_once(directories, debounce, step, force_polling):
            # after a re-install, READY means "it may all have changed while unwatched"
            yield event if first else WatchEvent.CHANGED
        first = False
        while not all(os.path.isdir(d) for d in directories):  # a watched directory was removed
            await asyncio.sleep(REINSTALL_POLL.total_seconds())


async def _watch_once(
    directories: Sequence[Path],
    debounce: timedelta,
    step: timedelta,
    force_polling: bool | None,
) -> AsyncIterator[WatchEvent]:
    """One watch; ends when a watched directory is removed."""
    from watchfiles import Change, awatch  # imported on first use: no thread until then

    watched = {os.path.abspath(d) for d in directories}
    changes = awatch(
        *directories,
        watch_filter=None,
        debounce=int(debounce / _MS),
        step=int(step / _MS),
        recursive=False,
        force_polling=force_polling,
    )
    iterator = aiter(changes)
    pending: asyncio.Future[set[tuple[Change, str]]] = asyncio.ensure_future(anext(iterator))
    try:
        await asyncio.sleep(0)  # the watch is installed on the generator's first step
        if pending.done():
            pending.result()  # could not be installed: raise now (e.g. a missing directory)
        yield WatchEvent.READY
        while True:
            batch = await pending
            yield WatchEvent.CHANGED
            if any(c == Change.deleted and os.path.abspath(p) in watched for c, p in batch):
                return
            pending = asyncio.ensure_future(anext(iterator))
    finally:
        pending.cancel()
        await asyncio.wait([pending])
        if not pending.cancelled():
            pending.exception()  # retrieved, so asyncio does not report it again
        with contextlib.suppress(RuntimeError):
            await changes.aclose()


async def watch_directories(
    directories: Sequence[Path],
    on_change: Callable[[], object],
    *,
    on_ready: Callable[[], object],
    debounce: timedelta,
    step: timedelta,
    force_polling: bool | None = None,
) -> None:
    """Call ``on_change`` after each batch of events in ``directories`` (not recursive), until
    cancelled. ``on_ready`` runs once the watch is installed: a change after it is seen, so it is
    where a caller looks for a change made between its first read and the start of the watch."""
    async for event in directory_changes(
        directories, debounce=debounce, step=step, force_polling=force_polling
    ):
        if event is WatchEvent.READY:
            on_ready()
        else:
            on_change()
