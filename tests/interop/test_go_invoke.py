"""Service invocation between the real pysentry ``daprd`` and Dapr's Go code (spec §9.6, §10, §11).

Everything gets its SVID from the real pysentry ``sentry``. The Go side speaks Dapr v1.16.0's
generated ``internals.v1``/``common.v1`` messages and dials with
``GRPCDialOptionMTLSUnknownTrustDomain(ns, appID)`` (``invoke-client``) or serves with
``GRPCServerOptionMTLS()`` (``invoke-server``). Every test runs twice: ``[light]`` with the
go-spiffe copies of those options (default), and ``[full]`` with Dapr's own ``pkg/security``
handler (marker ``interop_full``, opt-in).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pysentry.nameresolution import Registration, SqliteResolver, SqliteSettings
from pysentry.testing import TestCA
from tests.e2e.conftest import Cluster, Daprd
from tests.interop.goprograms import GoBinaries, GoServer, expect_ok, go_invoke_server, run_go


@pytest.fixture(
    params=["light", pytest.param("full", marks=pytest.mark.interop_full)],
)
def go_bins(request: pytest.FixtureRequest) -> GoBinaries:
    """The LIGHT build (default) or, with ``-m interop_full``, the FULL pkg/security build."""
    bins: GoBinaries = request.getfixturevalue(f"go_bins_{request.param}")
    return bins


async def mesh(cluster: Cluster, config_extra: str = "") -> tuple[Path, int, Daprd]:
    """Sentry, and app ``appB`` behind a pysentry daprd with mTLS: (anchors, sentry port, B)."""
    ca = TestCA.create("localhost")
    creds = cluster.tmp / "creds"
    creds.mkdir(mode=0o700)
    ca.write_credentials(creds)
    anchors = cluster.tmp / "anchors.pem"
    anchors.write_bytes(ca.anchors_pem())
    _, sentry_port = await cluster.sentry(creds)
    _, app_port = await cluster.app("appB")
    b = await cluster.daprd(
        "appB",
        app_port,
        sentry_port=sentry_port,
        anchors_pem=ca.anchors_pem(),
        config_extra=config_extra,
    )
    return anchors, sentry_port, b


def go_identity(anchors: Path, sentry_port: int) -> list[str]:
    return ["-sentry-address", f"127.0.0.1:{sentry_port}", "-trust-anchors-file", str(anchors)]


async def go_call(bins: GoBinaries, *args: str) -> Any:
    return await asyncio.to_thread(run_go, bins, "invoke-client", *args)


# --- Go daprd-alike -> pysentry daprd ----------------------------------------------------------
@pytest.mark.parametrize("stream", [False, True], ids=["CallLocal", "CallLocalStream"])
async def test_go_client_calls_pysentry_daprd(
    go_bins: GoBinaries, cluster: Cluster, stream: bool
) -> None:
    anchors, sentry_port, b = await mesh(cluster)
    args = [
        *go_identity(anchors, sentry_port),
        "-self-app-id",
        "appGo",
        "-address",
        f"127.0.0.1:{b.internal_port}",
        "-app-id",
        "appB",
        "-method",
        "echo/sub",
        "-body",
        "hello from go",
        "-body-size",
        "5000" if stream else "0",
        "-content-type",
        "text/plain",
        "-verb",
        "PUT",
        "-querystring",
        "a=1&status=201",
        "-header",
        "X-Interop=go",
        "-header",
        "dapr-caller-app-id=spoofed",
    ]
    if stream:
        args.append("-stream")
    out = expect_ok(await go_call(go_bins, *args))
    # Go's GRPCDialOptionMTLSUnknownTrustDomain("default", "appB") accepted our daprd's SVID.
    assert out["peer_spiffe_id"] == "spiffe://public/ns/default/appB"
    assert out["self_spiffe_id"] == "spiffe://public/ns/default/appGo"
    assert out["build"] == go_bins.flavor
    assert out["status_code"] == 201
    assert out["headers"]["x-from-app"] == ["appB"]
    assert out["content_type"].startswith("application/json")
    echoed = json.loads(out["body"])
    assert out["body_len"] == len(out["body"].encode())
    assert echoed["app"] == "appB"
    assert (echoed["method"], echoed["path"]) == ("PUT", "/echo/sub")
    assert echoed["query"] == "a=1&status=201"
    assert echoed["body"] == "hello from go" + "x" * (5000 if stream else 0)
    assert echoed["headers"]["x-interop"] == "go"
    assert echoed["headers"]["content-type"].startswith("text/plain")
    # The callee stamps the caller from the verified Go SVID, not from the sent metadata.
    assert echoed["headers"]["dapr-caller-app-id"] == "appGo"
    assert echoed["headers"]["dapr-caller-namespace"] == "default"
    if stream:
        assert out["rpc"] == "CallLocalStream" and out["chunks"] >= 1


async def test_go_client_streams_a_large_response(go_bins: GoBinaries, cluster: Cluster) -> None:
    anchors, sentry_port, b = await mesh(cluster)
    out = expect_ok(
        await go_call(
            go_bins,
            *go_identity(anchors, sentry_port),
            "-self-app-id",
            "appGo",
            "-address",
            f"127.0.0.1:{b.internal_port}",
            "-app-id",
            "appB",
            "-stream",
            "-method",
            "big",
            "-verb",
            "GET",
            "-querystring",
            "n=10000",
        )
    )
    assert out["status_code"] == 200
    assert out["body"] == "x" * 10000
    assert out["chunks"] == 5  # 2 KiB chunks, seq 0..4 checked in Go


async def test_go_client_refuses_wrong_peer_identity(go_bins: GoBinaries, cluster: Cluster) -> None:
    anchors, sentry_port, b = await mesh(cluster)
    run = await go_call(
        go_bins,
        *go_identity(anchors, sentry_port),
        "-self-app-id",
        "appGo",
        "-address",
        f"127.0.0.1:{b.internal_port}",
        "-app-id",
        "appX",
    )
    assert run.returncode == 3 and run.error["code"] == "Unavailable"
    assert 'unexpected SPIFFE ID: \\"spiffe://public/ns/default/appB\\"' in run.error["message"]


ACL = """  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: appA
      defaultAction: allow
      trustDomain: public
      namespace: default
"""


async def test_pysentry_acl_sees_the_go_callers_spiffe_id(
    go_bins: GoBinaries, cluster: Cluster
) -> None:
    anchors, sentry_port, b = await mesh(cluster, config_extra=ACL)
    base = [
        *go_identity(anchors, sentry_port),
        "-address",
        f"127.0.0.1:{b.internal_port}",
        "-app-id",
        "appB",
        "-method",
        "echo",
    ]
    denied = await go_call(go_bins, *base, "-self-app-id", "appGo")
    assert denied.returncode == 3 and denied.error["code"] == "PermissionDenied"
    assert denied.error["message"] == (
        "access control policy has denied access to id: spiffe://public/ns/default/appGo "
        "operation: echo verb: POST"
    )
    allowed = await go_call(go_bins, *base, "-self-app-id", "appA")
    assert expect_ok(allowed)["status_code"] == 200


# --- pysentry daprd -> Go daprd-alike ----------------------------------------------------------
@contextlib.contextmanager
def registered(cluster: Cluster, app_id: str, address: str) -> Iterator[SqliteResolver]:
    """Register a Go peer in daprd's sqlite name resolution, as a sidecar would."""
    resolver = SqliteResolver(SqliteSettings(cluster.nr_db, update_interval=timedelta(seconds=2)))
    resolver.register(Registration(app_id, "default", address))
    try:
        yield resolver
    finally:
        resolver.unregister()
        resolver.close()


async def _heartbeat(resolver: SqliteResolver) -> None:
    while True:
        await asyncio.sleep(0.5)
        resolver.heartbeat()


@pytest.mark.parametrize("unary_only", [False, True], ids=["stream", "unary-fallback"])
async def test_pysentry_daprd_calls_go_server(
    go_bins: GoBinaries, cluster: Cluster, unary_only: bool
) -> None:
    anchors, sentry_port, _ = await mesh(cluster)
    extra = ["-no-stream"] if unary_only else []
    server_args = [*go_identity(anchors, sentry_port), "-app-id", "appGo", *extra]
    with go_invoke_server(go_bins, cluster.tmp, *server_args) as go:
        assert go.spiffe_id == "spiffe://public/ns/default/appGo"
        assert go.build == go_bins.flavor
        a = await cluster.daprd("appA", sentry_port=sentry_port, anchors_pem=anchors.read_bytes())
        await _call_go(a, go, unary_only, cluster)


async def _call_go(a: Daprd, go: GoServer, unary_only: bool, cluster: Cluster) -> None:
    with registered(cluster, "appGo", go.address) as resolver:
        beat = asyncio.create_task(_heartbeat(resolver))
        try:
            body = b"hi go " + b"y" * 3000
            async with (
                aiohttp.ClientSession() as s,
                s.post(
                    f"{a.url}/v1.0/invoke/appGo/method/orders/1?x=1&status=202",
                    data=body,
                    headers={"Content-Type": "text/plain", "X-Interop": "py"},
                ) as r,
            ):
                status, headers, text = r.status, r.headers, await r.text()
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
    assert status == 202, (status, text, go.text())
    # The Go server (GRPCServerOptionMTLS + pkg/security/spiffe.FromGRPCContext) saw our SVID.
    assert headers["x-go-peer-spiffe-id"] == "spiffe://public/ns/default/appA"
    assert headers["x-go-peer-app-id"] == "appA"
    echoed = json.loads(text)
    assert echoed["caller_spiffe_id"] == "spiffe://public/ns/default/appA"
    assert echoed["rpc"] == ("CallLocal" if unary_only else "CallLocalStream")
    assert headers["x-go-rpc"] == echoed["rpc"]
    assert (echoed["method"], echoed["verb"], echoed["ver"]) == ("orders/1", "POST", "V1")
    assert "x=1" in echoed["querystring"]
    assert echoed["body"] == body.decode()
    if not unary_only:
        assert echoed["chunks"] == 2  # 3006 bytes in 2 KiB chunks
    assert echoed["content_type"].startswith("text/plain")
    md = echoed["metadata"]
    assert md["dapr-caller-app-id"] == ["appA"]
    assert md["dapr-callee-app-id"] == ["appGo"]
    assert md["x-interop"] == ["py"]
