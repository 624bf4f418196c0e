"""A real daprd given damaged trust anchors stops at start with the source, the block and the fix.

Go's decoder skips a block it cannot decode, so Dapr's daprd would trust only the first root of a
``DAPR_TRUST_ANCHORS`` whose second root is cut, and peers under that root would fail later.
"""

from __future__ import annotations

import asyncio

from pysentry.testing import TestCA
from tests.e2e.conftest import Cluster, Proc

NO_SENTRY = ["--enable-mtls", "--sentry-address", "127.0.0.1:1"]  # never reached: anchors first


def _cut_second_root() -> bytes:
    pem = TestCA.create("localhost").anchors_pem() + TestCA.create("localhost").anchors_pem()
    second = pem.index(b"-----BEGIN", 1)
    return pem[: second + (len(pem) - second) // 2]


async def _exit_code(proc: Proc, timeout: float = 15) -> int:
    for _ in range(int(timeout * 10)):
        if not proc.alive():
            return proc.popen.returncode
        await asyncio.sleep(0.1)
    raise AssertionError(f"{proc.name} still running:\n{proc.text()}")


async def test_damaged_anchors_are_a_clear_startup_error(cluster: Cluster) -> None:
    cut = _cut_second_root()
    d = await cluster.daprd("appA", args=NO_SENTRY, anchors_pem=cut, wait=False)
    assert await _exit_code(d.proc) == 1
    text = d.proc.text()
    assert (
        "invalid trust anchors in DAPR_TRUST_ANCHORS: PEM block #2 ('CERTIFICATE') has no END "
        "line: the value is truncated or the block is damaged; set DAPR_TRUST_ANCHORS to the "
        "complete CA bundle (ca.crt) again, keeping its newlines"
    ) in text, text
    assert "Traceback" not in text
    assert cut.splitlines()[1].decode() not in text  # never a PEM body in the log

    anchors = cluster.tmp / "anchors.pem"
    anchors.write_bytes(cut)
    f = await cluster.daprd("appB", args=NO_SENTRY, anchors_file=anchors, wait=False)
    assert await _exit_code(f.proc) == 1
    text = f.proc.text()
    assert f"invalid trust anchors in file {str(anchors)!r}: PEM block #2 ('CERTIFICATE')" in text
    assert "copy the complete CA bundle (ca.crt) into it again" in text
    assert "Traceback" not in text
