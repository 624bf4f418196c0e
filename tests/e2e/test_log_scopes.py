"""daprd logs under Dapr's per-package scopes, and a fatal error at level ``fatal``.

A real plaintext daprd with ``--log-as-json`` (and one in text form) on loopback: each line a
Dapr user filters on carries the scope Go's daprd gives it.
"""

from __future__ import annotations

import json
import socket

import aiohttp

from tests.e2e.conftest import BIN, Cluster, free_port


async def test_json_lines_carry_daprs_scopes(cluster: Cluster) -> None:
    d = await cluster.daprd("appA", args=["--log-as-json"])
    async with aiohttp.ClientSession() as s, s.post(f"{d.url}/v1.0/invoke/nobody/method/x") as r:
        assert r.status == 500
    await d.proc.wait_log("invoke nobody/x failed")
    d.proc.stop()
    lines = [json.loads(line) for line in d.proc.text().splitlines() if line.startswith("{")]
    assert lines, d.proc.text()

    def scope_of(prefix: str) -> tuple[str, str]:
        found = [x for x in lines if x["msg"].startswith(prefix)]
        assert found, f"{prefix!r} not logged:\n{d.proc.text()}"
        return found[0]["scope"], found[0]["level"]

    assert scope_of("Starting Dapr Runtime") == ("dapr.runtime", "info")
    assert scope_of("mTLS is disabled. Skipping") == ("dapr.runtime.security", "warning")
    assert scope_of("gRPC server listening on TCP address") == ("dapr.runtime.grpc.api", "info")
    assert scope_of("Internal gRPC server is running") == ("dapr.runtime", "info")
    assert scope_of("No Access control policy specified") == ("dapr.acl", "debug")
    assert scope_of("invoke nobody/x failed") == ("dapr.runtime.http", "debug")
    assert scope_of("dapr initialized. Status: Running") == ("dapr.runtime", "info")
    assert all(x["app_id"] == "appA" and x["type"] == "log" for x in lines)
    assert not [x for x in lines if x["scope"].startswith("pysentry")]


async def test_fatal_error_is_level_fatal(cluster: Cluster) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for as_json in (False, True):
            proc = cluster.spawn(
                f"daprd-fatal-{as_json}",
                [
                    str(BIN / "daprd"),
                    "--app-id",
                    "appF",
                    "--dapr-http-port",
                    str(port),
                    "--metrics-port",
                    str(free_port()),
                    *(["--log-as-json"] if as_json else []),
                ],
            )
            assert proc.popen.wait(30) == 1
            fatal = [
                line for line in proc.text().splitlines() if "Fatal error from runtime" in line
            ]
            assert fatal, proc.text()
            if as_json:
                record = json.loads(fatal[0])
                assert record["level"] == "fatal"
                assert record["scope"] == "dapr.runtime"
                assert "--dapr-http-port" in record["msg"]
            else:
                assert fatal[0].startswith('time="')
                assert " level=fatal " in fatal[0]
                assert " scope=dapr.runtime " in fatal[0]
