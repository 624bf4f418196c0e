"""Directory watching for hot reload (``watchfiles``): trust-anchor files, Sentry's credentials.

Directories are watched, not files: editors and ``kubectl`` replace files by rename or symlink
swap, which a watch on the file itself would miss.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

_MS = timedelta(milliseconds=1)


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
    from watchfiles import awatch  # imported on first use: it starts no thread until then

    changes = awatch(
        *directories,
        watch_filter=None,
        debounce=int(debounce / _MS),
        step=int(step / _MS),
        recursive=False,
        force_polling=force_polling,
    )
    iterator = aiter(changes)
    pending: asyncio.Future[object] = asyncio.ensure_future(anext(iterator))
    try:
        await asyncio.sleep(0)  # the watch is installed on the generator's first step
        on_ready()
        while True:
            await pending
            on_change()
            pending = asyncio.ensure_future(anext(iterator))
    finally:
        pending.cancel()
        await asyncio.wait([pending])
        if not pending.cancelled():
            pending.exception()  # retrieved, so asyncio does not report it again
        with contextlib.suppress(RuntimeError):
            await changes.aclose()
