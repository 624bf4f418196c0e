"""daprd's garbage collector: off from the first import (in the ``daprd`` process only), then
:func:`settle_gc` once the sidecar serves (issue 13, levers 4 and 5).

daprd runs start-up with the garbage collector off (``main()``; ``settle_gc()`` turns it back
on once the sidecar is up). The imports that come before ``main()`` allocated enough for ~70
young and a few middle-generation collections, 5-15 ms of CPU before the first certificate.
:mod:`pysentry.sidecar.main` imports this module before anything else; it turns the collector
off only when the process is daprd itself (the ``daprd`` console script, or ``python -m
pysentry.sidecar.main`` as ``dapr run`` starts it), never in a process that merely imports the
sidecar (tests, tools), whose collector stays as it was.
"""

from __future__ import annotations

import gc
import os
import sys
import time

DAPRD_SCRIPTS = frozenset({"daprd", "daprd.exe"})
MAIN_MODULE = "pysentry.sidecar.main"


def launched_as_daprd() -> bool:
    """Whether ``__main__`` is the daprd script or ``-m pysentry.sidecar.main``."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None) == MAIN_MODULE:
        return True
    return os.path.basename(getattr(main, "__file__", None) or "") in DAPRD_SCRIPTS


#: When start-up's garbage is collected, after "dapr initialized" (off the first requests' path).
SETTLE_GC_AFTER_S = 0.5
#: CPython's default is (700, 10, 10).
SERVING_GC_THRESHOLD = (7000, 20, 10)
#: The longest the collector stays off: a start-up that waits (Sentry down, retries with their
#: tracebacks, a slow app) collects as usual past this; settle_gc() still runs at the end.
START_GC_OFF_LIMIT_S = 5.0


def sleep_collecting(seconds: float) -> None:
    """The pause between the attempts of the first (blocking) Sentry request: a start-up that
    waits collects as usual from then on."""
    gc.enable()
    time.sleep(seconds)


def settle_gc() -> None:
    """End of start-up (the collector is off from ``main()`` on): what start-up built (modules,
    protobuf descriptors, the Configuration) moves to the permanent generation, so no collection
    during traffic walks it (a full one took tens of ms, a p99 stall); young collections run
    10x less often. Issue 13, lever 4."""
    gc.collect()  # start-up's garbage (the collector was off), once
    gc.freeze()
    gc.set_threshold(*SERVING_GC_THRESHOLD)
    gc.enable()


if launched_as_daprd():
    gc.disable()
