"""daprd's collector after start-up: back on, start-up's objects frozen, a higher threshold."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from pysentry.sidecar.main import SERVING_GC_THRESHOLD, settle_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold, enabled = gc.get_threshold(), gc.isenabled()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
        if enabled:
            gc.enable()
        else:
            gc.disable()


@pytest.mark.usefixtures("restored_gc")
def test_settle_gc_freezes_start_up_and_turns_the_collector_back_on() -> None:
    gc.disable()  # as main() does before start-up
    settle_gc()
    assert gc.isenabled()
    assert gc.get_freeze_count() > 1000  # the modules, descriptors and config of start-up
    assert gc.get_threshold() == SERVING_GC_THRESHOLD
    assert SERVING_GC_THRESHOLD[0] >= 10 * 700  # ten times fewer young collections
