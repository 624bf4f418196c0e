"""Name this process as the Dapr binary it stands in for (``daprd``, ``sentry``).

The real ``dapr`` CLI finds sidecars by process name (``/proc/<pid>/comm``); a Python entry
point would otherwise show as ``python``. Linux only; elsewhere this does nothing.
"""

from __future__ import annotations

import sys

_PR_SET_NAME = 15


def set_process_name(name: str) -> bool:
    """Set the kernel's name for this process (at most 15 bytes). True if it was set.

    Writes ``/proc/self/comm`` (what ``prctl(PR_SET_NAME)`` sets, for the main thread); falls
    back to ``prctl`` through ctypes, whose import and library lookup cost start-up time."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open("/proc/self/comm", "wb") as comm:
            comm.write(name.encode()[:15])
        return True
    except OSError:
        pass
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return int(libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)) == 0
    except OSError:
        return False
