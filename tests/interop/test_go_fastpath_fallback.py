"""The fast path next to Go: pysentry daprds agree on ``pysentry-invoke/2`` by ALPN, a Go daprd
(v1.16.0, offering only ``h2``) gets gRPC in both directions, and so does a pysentry daprd run
with ``--pysentry-fastpath=false``; every pair answers the same.

All daprds get their SVIDs from the real pysentry ``sentry`` and share one ``sqlite`` resolver.
Which protocol each connection took is read from the daprds' debug logs (the caller logs the
peer's ALPN choice, the callee each ``pysentry-invoke/2`` connection it accepts).
"""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp

from tests.e2e.conftest import Cluster, Daprd
from tests.interop.daprbins import DaprBinaries
from tests.interop.realdapr import go_daprd, py_daprd, pysentry_sentry, shared_config

BODY = bytes(range(256)) * 400  # 102 400 bytes


async def _call(
    caller: Daprd, verb: str, target: str, path: str, body: bytes = b""
) -> tuple[int, str, bytes]:
    url = f"{caller.url}/v1.0/invoke/{target}/method/{path}"
    async with aiohttp.ClientSession() as s, s.request(verb, url, data=body or None) as r:
        return r.status, r.headers.get("Content-Type", ""), await r.read()


async def test_go_peers_get_grpc_and_pysentry_peers_the_fast_path(
    dapr_bins: DaprBinaries, cluster: Cluster
) -> None:
    sentry_port, anchors = await pysentry_sentry(cluster)
    ports = {name: (await cluster.app(name))[1] for name in ("appGo", "appPy", "appPy2", "appOff")}
    go = await go_daprd(
        cluster, dapr_bins, "appGo", ports["appGo"], sentry_port=sentry_port, anchors_pem=anchors
    )
    py = await py_daprd(
        cluster, "appPy", ports["appPy"], sentry_port=sentry_port, anchors_pem=anchors
    )
    py2 = await py_daprd(
        cluster, "appPy2", ports["appPy2"], sentry_port=sentry_port, anchors_pem=anchors
    )
    off = await cluster.daprd(
        "appOff",
        ports["appOff"],
        sentry_port=sentry_port,
        anchors_pem=anchors,
        args=["--config", str(shared_config(cluster)), "--pysentry-fastpath=false"],
    )
    pairs = [(py, go), (go, py), (py, py2), (py2, py), (off, py2), (py, off), (go, off)]
    for caller, callee in pairs:
        for _ in range(3):  # the first call dials, the next ones reuse the connection
            status, _, raw = await _call(caller, "POST", callee.app_id, "echo/x?a=1", BODY)
            assert status == 200, (caller.app_id, callee.app_id, raw[:300])
            seen: dict[str, Any] = json.loads(raw)
            assert (seen["app"], seen["path"], seen["query"]) == (callee.app_id, "/echo/x", "a=1")
            assert seen["length"] == len(BODY)
            assert seen["headers"]["dapr-caller-app-id"] == caller.app_id
            assert seen["headers"]["dapr-caller-namespace"] == "default"
    # What each caller negotiated: the fast path between pysentry daprds that both offer it.
    for caller, callee, chosen in (
        (py, go, "h2: using gRPC"),
        (py, py2, "pysentry-invoke/2"),
        (py2, py, "pysentry-invoke/2"),
        (off, py2, None),  # offers only h2: never asks
        (py, off, "h2: using gRPC"),
    ):
        pattern = rf"peer \S+:{callee.internal_port} \({callee.app_id}\) chose "
        if chosen is None:
            assert not re.search(pattern, caller.proc.text())
        else:
            await caller.proc.wait_log(pattern + re.escape(chosen), timeout=5)
    accepted = r"Accepted a pysentry-invoke/2 connection from spiffe://\S+/ns/default/"
    await py2.proc.wait_log(accepted + "appPy\\b", timeout=5)
    await py.proc.wait_log(accepted + "appPy2\\b", timeout=5)
    assert not re.search(accepted, off.proc.text())  # it never offers the fast path
    assert not re.search(accepted + "appOff", py2.proc.text())
    # The same answers over either protocol: app statuses, large bodies.
    for path, verb, body, expected in (
        ("raw", "PUT", BODY, 200),
        ("no/such/route", "GET", b"", 404),  # the app's own 404
        ("big?n=300000", "GET", b"", 200),
    ):
        answers = {
            caller.app_id: await _call(caller, verb, "appPy2", path, body)
            for caller in (py, off, go)  # fast path, gRPC from pysentry, gRPC from Go
        }
        assert answers["appPy"][0] == expected, answers["appPy"]
        assert answers["appPy"] == answers["appOff"], path
        assert (answers["appPy"][0], answers["appPy"][2]) == (
            answers["appGo"][0],
            answers["appGo"][2],
        )
