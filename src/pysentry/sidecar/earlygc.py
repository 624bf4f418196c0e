"""The collector off from daprd's first import, in the ``daprd`` process only (issue 13).

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

DAPRD_SCRIPTS = frozenset({"daprd", "daprd.exe"})
MAIN_MODULE = "pysentry.sidecar.main"


def launched_as_daprd() -> bool:
    """Whether ``__main__`` is the daprd script or ``-m pysentry.sidecar.main``."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None) == MAIN_MODULE:
        return True
    return os.path.basename(getattr(main, "__file__", None) or "") in DAPRD_SCRIPTS


if launched_as_daprd():
    gc.disable()
