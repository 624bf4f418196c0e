"""daprd's HTTP API at its edges: body caps (``--max-body-size``), memory held by calls in
flight, ``Expect: 100-continue``, and the JSON error boundary, against real processes.

The callee's app is Python's ``http.server`` (``tests/apps/static_app.py``): HTTP/1.0, it never
sends ``100 Continue`` and records every request it gets.
"""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import time
from pathlib import Path

import aiohttp

from tests.e2e.conftest import APPS, Cluster, Daprd, free_port, wait_http

MiB = 1 << 20


async def _static_app(cluster: Cluster) -> tuple[int, Path]:
    site = cluster.tmp / "site"
    (site / "public").mkdir(parents=True)
    (site / "public" / "hello.txt").write_bytes(b"hello")
    log = cluster.tmp / "app.jsonl"
    port = free_port()
    app = cluster.spawn(
        "app-static", ["python3", str(APPS / "static_app.py"), str(port), str(site), str(log)]
    )
    await wait_http(app, f"http://127.0.0.1:{port}/health", (200,))
    return port, log


def _blob(size: int) -> io.BytesIO:
    return io.BytesIO(b"x" * size)


def _requests(log: Path) -> list[dict[str, object]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


async def _pair(cluster: Cluster, *args: str) -> tuple[Daprd, Path]:
    port, log = await _static_app(cluster)
    await cluster.daprd("b", port, args=list(args))
    a = await cluster.daprd("a", args=list(args))
    return a, log


async def _exchange(port: int, head: str, body: bytes, *, expect: bool) -> tuple[bytes, bytes]:
    """Send ``head`` (+ ``Expect: 100-continue`` and waiting for the interim answer) then the
    body; returns (interim status line or b"", final response)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        extra = "Expect: 100-continue\r\n" if expect else ""
        writer.write((head + extra + "Connection: close\r\n\r\n").encode())
        await writer.drain()
        interim = b""
        if expect:
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            if not interim.startswith(b"HTTP/1.1 100"):
                length = 0
                for line in interim.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                return b"", interim + await asyncio.wait_for(reader.readexactly(length), 10)
        writer.write(body)
        await writer.drain()
        return interim, await asyncio.wait_for(_read_response(reader), 30)
    finally:
        writer.close()


async def _read_response(reader: asyncio.StreamReader) -> bytes:
    """One response, by its Content-Length (the server may keep the connection open)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


def _status_and_json(response: bytes) -> tuple[int, dict[str, str]]:
    head, _, payload = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(payload)


async def test_default_cap_is_4mi_and_answers_413(cluster: Cluster) -> None:
    a, log = await _pair(cluster)
    url = f"{a.url}/v1.0/invoke/b/method/public/hello.txt"
    async with aiohttp.ClientSession() as s:
        async with s.post(url, data=_blob(4 * MiB)) as r:
            assert r.status == 200, await r.text()
        for size in (4 * MiB + 1, 6 * MiB):
            async with s.post(url, data=_blob(size)) as r:
                assert r.status == 413
                err = await r.json()
            assert err["errorCode"] == "ERR_BODY_READ"
            assert "4194304 bytes" in err["message"] and "--max-body-size" in err["message"]

        async def chunked() -> object:
            for _ in range(6):
                yield b"y" * MiB

        async with s.post(url, data=chunked()) as r:  # no Content-Length
            assert r.status == 413
            assert (await r.json())["errorCode"] == "ERR_BODY_READ"
    assert [req["length"] for req in _requests(log)] == [4 * MiB]
    assert "The request body size parameter is: 4194304 bytes" in a.proc.text()


async def test_max_body_size_flags(cluster: Cluster) -> None:
    a, _ = await _pair(cluster, "--max-body-size", "1Mi")
    url = f"{a.url}/v1.0/invoke/b/method/public/hello.txt"
    async with aiohttp.ClientSession() as s:
        async with s.post(url, data=_blob(3 * MiB // 2)) as r:
            assert r.status == 413
        async with s.post(url, data=_blob(MiB)) as r:
            assert r.status == 200
    legacy = await cluster.daprd("c", args=["--dapr-http-max-request-size", "2"])
    legacy_url = f"{legacy.url}/v1.0/invoke/b/method/public/x"
    async with aiohttp.ClientSession() as s, s.post(legacy_url, data=_blob(3 * MiB)) as r:
        assert r.status == 413
        assert "2097152 bytes" in (await r.json())["message"]
    assert "Flag --dapr-http-max-request-size has been deprecated" in legacy.proc.text()
    bad = await cluster.daprd("d", args=["--max-body-size", "4MB"], wait=False)
    assert bad.proc.popen.wait(20) == 1
    assert "invalid value for 'max-body-size' option: '4MB'" in bad.proc.text()


async def test_expect_100_continue_is_answered_and_never_forwarded(cluster: Cluster) -> None:
    a, log = await _pair(cluster)
    body = b"z" * (2 * MiB)  # curl sends Expect: 100-continue for any body over 1 MiB
    head = (
        "POST /v1.0/invoke/b/method/public/hello.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Length: {len(body)}\r\n"
    )
    started = time.monotonic()
    interim, final = await _exchange(a.http_port, head, body, expect=True)
    assert interim.startswith(b"HTTP/1.1 100 Continue")
    assert final.startswith(b"HTTP/1.1 200"), final[:300]
    assert final.endswith(b"hello")
    assert time.monotonic() - started < 10
    (got,) = _requests(log)
    assert got["length"] == len(body)
    assert "expect" not in got["headers"]  # type: ignore[operator]

    # Over the cap: 413 instead of 100, before the client sends the body.
    big = head.replace(str(len(body)), str(5 * MiB))
    interim, final = await _exchange(a.http_port, big, b"", expect=True)
    assert interim == b""
    status, err = _status_and_json(final)
    assert status == 413 and err["errorCode"] == "ERR_BODY_READ"
    assert len(_requests(log)) == 1


async def test_memory_in_flight_is_bounded(cluster: Cluster) -> None:
    """Sixteen concurrent 16 MiB calls with --max-body-size 16Mi: the caller admits at most its
    budget (2 bodies) at once. Measured here: about 380 MiB peak with the budget, about 700 MiB
    without it (every body read at once)."""
    a, log = await _pair(cluster, "--max-body-size", "16Mi")
    pid = a.proc.popen.pid
    url = f"{a.url}/v1.0/invoke/b/method/public/hello.txt"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:

        async def call() -> int:
            async with s.post(url, data=_blob(16 * MiB)) as r:
                await r.read()
                return r.status

        statuses = await asyncio.gather(*(call() for _ in range(16)))
    assert statuses == [200] * 16
    assert len(_requests(log)) == 16
    peak_mib = _vm_hwm_kib(pid) / 1024
    print(f"caller peak RSS with 16 x 16 MiB in flight: {peak_mib:.0f} MiB")
    assert peak_mib < 550, peak_mib


def _vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


async def test_unexpected_failure_is_json_and_logged_once(cluster: Cluster) -> None:
    """A failing dependency (the name-resolution database loses its tables under the sidecar):
    the API answers Dapr's JSON error shape with the cause, and logs it once."""
    a, _ = await _pair(cluster)
    db = sqlite3.connect(cluster.nr_db, timeout=10)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            db.execute(f'DROP TABLE "{table}"')
        db.commit()
    finally:
        db.close()
    url = f"{a.url}/v1.0/invoke/nobody-here/method/x"
    async with aiohttp.ClientSession() as s, s.post(url, data=b"{}") as r:
        assert r.status == 500
        assert r.content_type == "application/json"
        err = await r.json()
    assert set(err) == {"errorCode", "message"}
    assert err["errorCode"] in ("ERR_INTERNAL", "ERR_DIRECT_INVOKE")
    assert "no such table" in err["message"]
    assert a.proc.text().count("no such table") >= 1
