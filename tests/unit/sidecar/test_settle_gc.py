"""daprd's collector after start-up: back on, start-up's objects frozen, a higher threshold."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator

import pytest

from pysentry.sidecar.earlygc import SERVING_GC_THRESHOLD, settle_gc


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


PROBE = """
import asyncio, gc, socket, sys
from pysentry.sidecar import runtime as daprd
from pysentry.sidecar.options import parse_options

daprd.START_GC_OFF_LIMIT_S = 0.3
daprd.SETTLE_GC_AFTER_S = 30.0  # so only the limit can turn the collector on within the probe
closed = socket.socket()
closed.bind(("127.0.0.1", 0))  # bound, never listening: the app's dials are refused
ports = ["--dapr-http-port", "0", "--dapr-grpc-port", "0", "--metrics-port", "0"]
opts = parse_options(["--app-id", "gc", "--app-port", str(closed.getsockname()[1]), *ports])

async def main():
    gc.disable()  # as daprd's main() does
    task = asyncio.create_task(daprd.run(opts))
    await asyncio.sleep(1.0)
    print(task.done(), gc.isenabled(), gc.get_freeze_count())
    task.cancel()

asyncio.run(main())
"""


def test_a_start_up_that_waits_for_the_app_turns_the_collector_back_on() -> None:
    """However long start-up's waits last (an app not listening, dialled every 100 ms; Sentry
    shedding load, retried with backoff), the collector is off for at most the limit. Here the
    settling is pushed past the probe, so only the limit can turn it on. (In a fresh
    interpreter: run() imports and starts servers.)"""
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    still_waiting, enabled, frozen = done.stdout.split()
    assert still_waiting == "False"  # still running (dialling the app)
    assert enabled == "True"
    assert frozen == "0"  # turned on by the limit, not by settle_gc()
