"""Two sidecars and two apps as real processes, mTLS off: the SDK path and the error shapes."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from tests.e2e.conftest import Cluster


async def test_sdk_invoke_through_two_plaintext_sidecars(cluster: Cluster) -> None:
    _, b_port = await cluster.app("appB")
    b = await cluster.daprd("appB", b_port)
    a = await cluster.daprd("appA")
    _, sdk_port = await cluster.sdk_app(a)
    async with aiohttp.ClientSession() as s:
        url = f"http://127.0.0.1:{sdk_port}/call?app=appB&method=echo/x&body=hello&q_k=v"
        async with s.get(url) as r:
            out = json.loads(await r.text())
        assert out["status_code"] == 200, out
        echoed = json.loads(out["text"])
        assert echoed["body"] == "hello" and echoed["path"] == "/echo/x"
        assert echoed["query"] == "k=v" and echoed["method"] == "POST"
        assert echoed["headers"]["x-sdk-header"] == "from-sdk"
        assert echoed["headers"]["dapr-caller-app-id"] == "appA"
        assert out["headers"]["x-from-app"] == ["appB"]  # the SDK gives lists
        async with s.get(f"http://127.0.0.1:{sdk_port}/call?app=nope&method=x") as r:
            err = json.loads(await r.text())["error"]
        assert err["status_code"] == 500 and err["error_code"] == "ERR_DIRECT_INVOKE"
        assert b.proc.alive()

        # B's sidecar restarts on another internal port: A finds it again (name resolution),
        # after B's clean shutdown removed its row.
        b.proc.stop()
        await cluster.daprd("appB", b_port)
        async with s.post(f"{a.url}/v1.0/invoke/appB/method/raw", data=b"again") as r:
            assert (r.status, await r.read()) == (200, b"again")

        # A second replica of appB: calls are spread over both.
        _, b2_port = await cluster.app("appB-replica2")
        await cluster.daprd("appB", b2_port)
        await asyncio.sleep(1.2)  # A's resolver caches an app's addresses for 1 s
        seen = set()
        for _ in range(6):
            async with s.get(f"{a.url}/v1.0/invoke/appB/method/echo") as r:
                seen.add((await r.json())["app"])
        assert seen == {"appB", "appB-replica2"}
