"""The Dapr gRPC API on ``--dapr-grpc-port``, driven by the official SDK's ``DaprClient()``.

Sentry, two sidecars over mTLS, and an HTTP app behind the callee. The SDK runs in its own
process (its generated protos share file names with ours).
"""

from __future__ import annotations

import json
import subprocess
import sys

import aiohttp

from tests.e2e.conftest import APPS, Cluster, free_port, wait_tcp


async def test_sdk_grpc_client_invokes_and_reads_metadata(cluster: Cluster) -> None:
    sentry_port, anchors, _ = await cluster.mtls_sentry()
    _, app_port = await cluster.app("b")
    await cluster.daprd("appB", app_port, sentry_port=sentry_port, anchors_file=anchors)
    a = await cluster.daprd("appA", sentry_port=sentry_port, anchors_file=anchors)
    env = {
        "DAPR_GRPC_PORT": str(a.grpc_port),
        "DAPR_HTTP_PORT": str(a.http_port),
        "DAPR_HEALTH_TIMEOUT": "10",
        "PATH": "/usr/bin:/bin",
    }
    run = subprocess.run(
        [sys.executable, str(APPS / "sdk_grpc_client.py"), "appB"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr + cluster.dump()
    out = json.loads(run.stdout)

    echo = out["invoke"]["data"]
    assert echo["method"] == "POST"
    assert echo["path"] == "/echo/grpc"
    assert echo["query"] == "k=v"
    assert echo["body"] == '{"x":1}'
    assert echo["headers"]["dapr-caller-app-id"] == "appA"
    assert out["invoke"]["content_type"] == "application/json"
    assert out["invoke"]["headers"]["x-from-app"] == ["b"]
    assert out["invoke"]["headers"]["dapr-http-status"] == ["200"]
    assert out["invoke_default_verb"] == "POST"
    # non-2xx from an HTTP app: Dapr's CodeFromHTTPStatus and the status text
    assert out["invoke_503"] == ["UNAVAILABLE", "Service Unavailable"]
    assert out["invoke_404"] == ["NOT_FOUND", "Not Found"]
    # the one normalization applies on the gRPC edge too
    code, details = out["invoke_question_mark"]
    assert code == "INVALID_ARGUMENT"
    assert "invalid method: method contains forbidden character" in details

    assert out["metadata"]["id"] == "appA"
    assert out["metadata"]["extended"]["cliPID"] == "1234"
    assert "not implemented: pysentry's daprd provides service invocation" in out["get_state"]

    # the HTTP API sees what the gRPC API set
    async with aiohttp.ClientSession() as s, s.get(f"{a.url}/v1.0/metadata") as r:
        assert (await r.json())["extended"]["cliPID"] == "1234"


async def test_grpc_app_behind_the_callee(cluster: Cluster) -> None:
    """``--app-protocol grpc``: the callee calls ``AppCallback/OnInvoke`` on an SDK gRPC app."""
    sentry_port, anchors, _ = await cluster.mtls_sentry()
    port = free_port()
    cluster.spawn("app-grpc", [sys.executable, str(APPS / "grpc_app.py"), str(port)])
    await wait_tcp(port)
    await cluster.daprd(
        "appG",
        port,
        sentry_port=sentry_port,
        anchors_file=anchors,
        args=["--app-protocol", "grpc"],
    )
    a = await cluster.daprd("appA", sentry_port=sentry_port, anchors_file=anchors)
    async with aiohttp.ClientSession() as s:
        url = f"{a.url}/v1.0/invoke/appG/method/echo"
        async with s.post(url, data=b"hi", headers={"Content-Type": "text/plain"}) as r:
            assert r.status == 200, await r.text()
            assert r.headers["x-from-grpc-app"] == "yes"
            got = await r.json()
        assert got["data"] == "hi"
        assert got["content_type"] == "text/plain"
        assert got["metadata"]["dapr-caller-app-id"] == ["appA"]
        async with s.post(f"{a.url}/v1.0/invoke/appG/method/fail", data=b"") as r:
            assert r.status == 500
            err = await r.json()
        assert err["code"] == 2  # UNKNOWN, as the SDK reports an exception
        async with s.post(f"{a.url}/v1.0/invoke/appG/method/nope", data=b"") as r:
            assert r.status == 501
            assert "nope method not implemented" in (await r.json())["message"]
        async with s.get(f"{a.url}/v1.0/metadata") as r:
            assert (await r.json())["appConnectionProperties"]["protocol"] == "http"
