"""The HTTP API's error boundary: whatever fails behind it, the app gets Dapr's JSON shape.

A real aiohttp server on loopback in front of an invoker whose dependency fails the way a
database does (``sqlite3.OperationalError``), or with an arbitrary bug.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator

import aiohttp
import pytest

from pysentry.sidecar.http_api import ApiSettings, HttpApi
from pysentry.sidecar.invocation import InvokeRequest, InvokeResponse, Target
from tests.integration.sidecar.conftest import serve


class FailingInvoker:
    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    async def invoke(self, target: Target, request: InvokeRequest) -> InvokeResponse:
        self.calls += 1
        raise self.error


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (sqlite3.OperationalError("database disk image is malformed"), "OperationalError"),
        (KeyError("surprise"), "KeyError"),
        (RuntimeError("boom"), "RuntimeError"),
    ],
)
async def test_unexpected_errors_are_dapr_json_and_logged_once(
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    error: Exception,
    cause: str,
) -> None:
    invoker = FailingInvoker(error)
    api = HttpApi(ApiSettings("appA", "default", None, 0, 0, False), invoker)
    runner, port = await serve(api.app())
    try:
        with caplog.at_level(logging.ERROR, logger="pysentry.sidecar.http_api"):
            url = f"http://127.0.0.1:{port}/v1.0/invoke/appB/method/orders"
            async with session.post(url, data=b"{}") as r:
                assert r.status == 500
                assert r.content_type == "application/json"
                body = await r.json()
            # the API keeps serving after the failure
            async with session.get(f"http://127.0.0.1:{port}/v1.0/healthz") as r:
                assert r.status == 204
    finally:
        await runner.cleanup()
    assert body == {"errorCode": "ERR_INTERNAL", "message": f"internal error: {cause}: {error}"}
    assert invoker.calls == 1
    records = [r for r in caplog.records if cause in r.getMessage()]
    assert len(records) == 1
    assert records[0].exc_info is not None


async def test_malformed_requests_are_json(session: aiohttp.ClientSession) -> None:
    api = HttpApi(ApiSettings("appA", "default", None, 0, 0, False), FailingInvoker(KeyError()))
    runner, port = await serve(api.app())
    try:
        # an unknown route, and an Expect we do not speak
        async with session.get(f"http://127.0.0.1:{port}/v2/nothing/here") as r:
            assert r.status == 404
            assert (await r.json())["errorCode"] == "ERR_NOT_FOUND"
        url = f"http://127.0.0.1:{port}/v1.0/invoke/appB/method/x"
        async with session.post(url, data=b"x", headers={"Expect": "teapot"}) as r:
            assert r.status == 417
            assert (await r.json())["errorCode"] == "ERR_MALFORMED_REQUEST"
    finally:
        await runner.cleanup()


async def test_set_metadata_shows_under_extended(session: aiohttp.ClientSession) -> None:
    """``PUT /v1.0/metadata/<key>`` (the real dapr CLI stores cliPID, appPID, appCommand)."""
    api = HttpApi(ApiSettings("appA", "default", None, 0, 0, False), FailingInvoker(KeyError()))
    runner, port = await serve(api.app())
    base = f"http://127.0.0.1:{port}/v1.0/metadata"
    try:
        for key, value in (("cliPID", "4242"), ("appCommand", "python app.py")):
            async with session.put(f"{base}/{key}", data=value.encode()) as r:
                assert r.status == 204
        async with session.get(base) as r:
            extended = (await r.json())["extended"]
        assert extended["cliPID"] == "4242"
        assert extended["appCommand"] == "python app.py"
        assert extended["namespace"] == "default"
        async with session.put(f"{base}/big", data=b"x" * (65 << 10)) as r:
            assert r.status == 400
            assert "at most 256 keys" in (await r.json())["message"]
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("path", "block"),
    [
        ("/v1.0/state/statestore/k", "state management"),
        ("/v1.0-alpha1/state/statestore/query", "state management"),
        ("/v1.0/publish/pubsub/topic", "publish and subscribe"),
        ("/v1.0/bindings/b", "bindings"),
        ("/v1.0/secrets/store/k", "secrets"),
        ("/v1.0/actors/t/1/method/m", "actors"),
        ("/v1.0-beta1/workflows/dapr/wf/start", "workflows"),
        ("/v1.0-alpha1/jobs/j", "jobs"),
    ],
)
async def test_other_building_blocks_say_so(
    session: aiohttp.ClientSession, path: str, block: str
) -> None:
    api = HttpApi(ApiSettings("appA", "default", None, 0, 0, False), FailingInvoker(KeyError()))
    runner, port = await serve(api.app())
    try:
        async with session.post(f"http://127.0.0.1:{port}{path}", data=b"[]") as r:
            assert r.status == 501
            body = await r.json()
    finally:
        await runner.cleanup()
    assert body["errorCode"] == "ERR_NOT_IMPLEMENTED"
    assert body["message"].startswith(f"{block} is not implemented: pysentry's daprd provides")
