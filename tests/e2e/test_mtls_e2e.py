"""Sentry + two sidecars + two apps, mTLS on: the SDK call, and what the hop proves."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization

from pysentry.testing import TestCA
from tests.e2e.conftest import Cluster, Proc


def creds(tmp: Path, name: str = "creds") -> tuple[TestCA, Path]:
    ca = TestCA.create("localhost")
    d = tmp / name
    d.mkdir(mode=0o700)
    ca.write_credentials(d)
    return ca, d


async def test_sdk_invoke_over_mtls(cluster: Cluster) -> None:
    ca, d = creds(cluster.tmp)
    anchors = cluster.tmp / "anchors.pem"
    anchors.write_bytes(ca.anchors_pem())
    _, sentry_port = await cluster.sentry(d)
    _, b_port = await cluster.app("appB")
    b = await cluster.daprd("appB", b_port, sentry_port=sentry_port, anchors_pem=ca.anchors_pem())
    a = await cluster.daprd("appA", sentry_port=sentry_port, anchors_file=anchors)
    _, sdk_port = await cluster.sdk_app(a)
    async with aiohttp.ClientSession() as s:
        url = f"http://127.0.0.1:{sdk_port}/call?app=appB&method=echo&body=over-mtls&q_status=201"
        async with s.get(url) as r:
            out = json.loads(await r.text())
        assert out["status_code"] == 201, out
        echoed = json.loads(out["text"])
        assert echoed["body"] == "over-mtls" and echoed["headers"]["x-sdk-header"] == "from-sdk"
        assert echoed["headers"]["dapr-caller-app-id"] == "appA"
        assert out["headers"]["x-from-app"] == ["appB"]
        async with s.get(f"{a.url}/v1.0/metadata") as r:
            meta = await r.json()
        assert meta["mtls"]["spiffeId"] == "spiffe://public/ns/default/appA"
        assert meta["mtls"]["certExpiry"]
        assert await a.metric(s, "dapr_runtime_mtls_init_total") == 1
    assert b.proc.alive()


ACL_CONFIG = """  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: appA
      defaultAction: allow
      trustDomain: public
      namespace: default
"""


async def test_the_hop_is_mtls_and_identities_are_checked(cluster: Cluster) -> None:
    ca, d = creds(cluster.tmp)
    pem = ca.anchors_pem()
    _, sentry_port = await cluster.sentry(d)
    _, b_port = await cluster.app("appB")
    _, z_port = await cluster.app("appZ")
    b = await cluster.daprd(
        "appB", b_port, sentry_port=sentry_port, anchors_pem=pem, config_extra=ACL_CONFIG
    )
    a = await cluster.daprd("appA", sentry_port=sentry_port, anchors_pem=pem)
    c = await cluster.daprd("appC", sentry_port=sentry_port, anchors_pem=pem)
    _, p_port = await cluster.app("appP")
    await cluster.daprd(
        "appP", p_port, sentry_port=sentry_port, anchors_pem=pem, env={"NAMESPACE": "prod"}
    )
    # Registered as appZ, but its certificate says appX: a sidecar answering for another app.
    await cluster.daprd(
        "appZ",
        z_port,
        sentry_port=sentry_port,
        anchors_pem=pem,
        env={"SENTRY_LOCAL_IDENTITY": "appX"},
    )
    async with aiohttp.ClientSession() as s:
        # The callee sees the caller's verified identity, whatever headers the caller sends.
        async with s.post(
            f"{a.url}/v1.0/invoke/appB/method/echo",
            data=b"x",
            headers={"dapr-caller-app-id": "spoofed"},
        ) as r:
            assert r.status == 200
            assert (await r.json())["headers"]["dapr-caller-app-id"] == "appA"
        # Access control on the callee uses that verified ID.
        async with s.post(f"{c.url}/v1.0/invoke/appB/method/raw", data=b"x") as r:
            assert r.status == 403
            body = await r.json()
        assert body["errorCode"] == "ERR_DIRECT_INVOKE"
        assert (
            "access control policy has denied access to id: "
            "spiffe://public/ns/default/appC operation: raw verb: POST"
        ) in body["message"]
        # Another namespace: "<app>.<namespace>", peer ID /ns/prod/appP.
        async with s.get(f"{a.url}/v1.0/invoke/appP.prod/method/echo") as r:
            assert r.status == 200, await r.text()
            seen = (await r.json())["headers"]
        assert seen["dapr-caller-namespace"] == "default" and seen["dapr-callee-app-id"] == "appP"
        async with s.get(f"{a.url}/v1.0/invoke/appP/method/echo") as r:
            assert r.status == 500  # appP is not in A's own namespace
        # The caller refuses a peer whose SVID is not the app-id it dialled.
        async with s.get(f"{a.url}/v1.0/invoke/appZ/method/echo") as r:
            assert r.status == 500
            body = await r.json()
        assert "unexpected SPIFFE ID: 'spiffe://public/ns/default/appX'" in body["message"]

    # Plaintext and other-root clients are refused on B's internal port.
    from grpclib.client import Channel
    from grpclib.exceptions import StreamTerminatedError

    from pysentry.proto.dapr.proto.internals.v1.service_invocation_grpc import (
        ServiceInvocationStub,
    )
    from pysentry.sidecar import messages
    from pysentry.sidecar.invocation import InvokeRequest

    plain = Channel("127.0.0.1", b.internal_port)
    try:
        with pytest.raises((StreamTerminatedError, ConnectionError)):
            await ServiceInvocationStub(plain).CallLocal(
                messages.request_to_proto(InvokeRequest("echo")), timeout=5
            )
    finally:
        plain.close()
    other = TestCA.create()
    chain, key = other.issue_svid("spiffe://public/ns/default/appA")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    (cluster.tmp / "other.pem").write_bytes(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ctx.load_cert_chain(cluster.tmp / "other.pem")
    ctx.set_alpn_protocols(["h2"])
    foreign = Channel("127.0.0.1", b.internal_port, ssl=ctx)
    try:
        with pytest.raises((StreamTerminatedError, ConnectionError, ssl.SSLError)):
            await ServiceInvocationStub(foreign).CallLocal(
                messages.request_to_proto(InvokeRequest("echo")), timeout=5
            )
    finally:
        foreign.close()


async def _exit(proc: Proc, timeout: float = 15) -> int:
    for _ in range(int(timeout * 10)):
        if not proc.alive():
            return proc.popen.returncode
        await asyncio.sleep(0.1)
    raise AssertionError(f"{proc.name} still running:\n{proc.text()}")


async def test_startup_errors_are_clear(cluster: Cluster) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        d = await cluster.daprd("appA", args=["--dapr-http-port", str(port)], wait=False)
        assert await _exit(d.proc) == 1
    assert f"--dapr-http-port: port {port} is already in use" in d.proc.text()

    d = await cluster.daprd(
        "appB",
        args=["--enable-mtls", "--sentry-address", "127.0.0.1:1"],
        wait=False,
        env={"DAPR_CERT_CHAIN": "x"},
    )
    assert await _exit(d.proc) == 1
    text = d.proc.text()
    assert "DAPR_CERT_CHAIN is set but ignored" in text
    assert "trust anchors are required when mTLS is enabled" in text
    assert "DAPR_TRUST_ANCHORS" in text and "--trust-anchors-file" in text


async def test_mtls_enabled_by_configuration_needs_anchors(cluster: Cluster) -> None:
    d = await cluster.daprd(
        "appC",
        config_extra="  mtls:\n    enabled: true\n    sentryAddress: 127.0.0.1:1\n",
        wait=False,
    )
    assert await _exit(d.proc) == 1
    assert "trust anchors are required when mTLS is enabled" in d.proc.text()
