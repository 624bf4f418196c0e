"""Access control and the path the app receives are one and the same (CVE-2026-41491's class).

A real Sentry, a caller sidecar ``a`` and a callee sidecar ``b`` whose ACL lets ``a`` reach only
``POST /public/**``. ``b``'s app is Python's ``http.server`` serving a directory that holds
``public/`` and ``admin/secret.txt``: it decodes and resolves ``..`` itself, so any gap between
what the ACL decided and what the app is sent serves the secret. For each request the test
checks the decision and the exact raw path that reached the app.

The same methods are also sent straight to ``b``'s internal gRPC port with an SVID for ``a``,
unnormalized, as a Go daprd sends them: the callee never relies on the caller's normalization.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from pysentry.proto.dapr.proto.internals.v1.service_invocation_grpc import ServiceInvocationStub
from pysentry.sidecar import messages
from pysentry.sidecar.invocation import InvokeRequest
from pysentry.testing import TestCA
from tests.e2e.conftest import APPS, Cluster, Daprd, free_port, svid_client_context, wait_http

SECRET = b"TOP-SECRET-admin-file"
PUBLIC = b"hello from public"

ACL = """  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: a
      defaultAction: deny
      trustDomain: public
      namespace: default
      operations:
      - name: /public/**
        httpVerb: ['POST']
        action: allow
"""

# (method as written in the caller's URL, HTTP status, raw path the app receives or None)
CASES: list[tuple[str, int, str | None]] = [
    ("public/hello.txt", 200, "/public/hello.txt"),
    ("public/%2e%2e/admin/secret.txt", 403, None),
    ("public/%2E%2E/admin/secret.txt", 403, None),
    ("public/..%2Fadmin/secret.txt", 403, None),
    ("public/..%2fadmin/secret.txt", 403, None),
    ("public/%2e%2e%2fadmin%2fsecret.txt", 403, None),
    ("public/../admin/secret.txt", 403, None),
    ("public/./../admin/secret.txt", 403, None),
    ("public//..//admin/secret.txt", 403, None),
    ("%2e%2e/%2e%2e/admin/secret.txt", 403, None),
    ("public/sub/../../admin/secret.txt", 403, None),
    ("admin/secret.txt", 403, None),
    # double encoding: decoded once, the segment is a literal "%2e%2e", never a parent
    ("public/%252e%252e/admin/secret.txt", 404, "/public/%252e%252e/admin/secret.txt"),
    (
        "public/%252e%252e%252fadmin%252fsecret.txt",
        404,
        "/public/%252e%252e%252fadmin%252fsecret.txt",
    ),
    # backslashes are literal characters, sent escaped
    ("public/..%5Cadmin%5Csecret.txt", 404, "/public/..%5Cadmin%5Csecret.txt"),
    ("public/..%5cadmin%5csecret.txt", 404, "/public/..%5Cadmin%5Csecret.txt"),
    # ';' is never a path-parameter delimiter for the app
    ("public/..;/admin/secret.txt", 404, "/public/..%3B/admin/secret.txt"),
    ("public/hello.txt;jsessionid=1", 404, "/public/hello.txt%3Bjsessionid=1"),
    # NUL, '#', '?' and control characters are refused before anything is sent
    ("public/%00/../admin/secret.txt", 400, None),
    ("public/hello.txt%00", 400, None),
    ("public/a%23b", 400, None),
    ("public/a%3Fb", 400, None),
    ("public/a%0Ab", 400, None),
    ("public/a%zz", 400, None),
    # the trailing slash is kept: the app lists the directory instead of redirecting
    ("public/sub/", 200, "/public/sub/"),
    ("public/sub", 301, "/public/sub"),
]


def _site(root: Path) -> None:
    (root / "public" / "sub").mkdir(parents=True)
    (root / "admin").mkdir()
    (root / "public" / "hello.txt").write_bytes(PUBLIC)
    (root / "public" / "sub" / "index.txt").write_bytes(b"sub")
    (root / "admin" / "secret.txt").write_bytes(SECRET)
    # targets of the literal (non-traversal) forms, so a wrong decode would show
    for odd in ("%2e%2e", "..\\admin\\secret.txt", "..;"):
        (root / "public" / odd).parent.mkdir(parents=True, exist_ok=True)


async def _raw_post(port: int, target: str, body: bytes = b"x") -> tuple[int, bytes]:
    """POST with the request target written byte for byte (no client-side URL cleaning)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 20)
    finally:
        writer.close()
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), payload


def _raw_request(method: str) -> messages.InternalInvokeRequest:
    """An ``InternalInvokeRequest`` whose method is sent exactly as given (as Go daprd does)."""
    msg = messages.request_to_proto(InvokeRequest("placeholder", verb="POST"))
    msg.message.method = method
    return msg


def _app_paths(log: Path) -> list[str]:
    if not log.exists():
        return []
    return [json.loads(line)["path"] for line in log.read_text().splitlines()]


async def _setup(cluster: Cluster) -> tuple[Daprd, Daprd, Path, TestCA]:
    sentry_port, anchors, ca = await cluster.mtls_sentry()
    site = cluster.tmp / "site"
    _site(site)
    log = cluster.tmp / "app-requests.jsonl"
    port = free_port()
    app = cluster.spawn(
        "app-static", ["python3", str(APPS / "static_app.py"), str(port), str(site), str(log)]
    )
    await wait_http(app, f"http://127.0.0.1:{port}/health", (200,))
    b = await cluster.daprd(
        "b", port, sentry_port=sentry_port, anchors_file=anchors, config_extra=ACL
    )
    a = await cluster.daprd("a", sentry_port=sentry_port, anchors_file=anchors)
    return a, b, log, ca


async def test_acl_decision_and_app_path_agree(cluster: Cluster) -> None:
    a, b, log, ca = await _setup(cluster)
    seen = 0
    outcomes: list[tuple[str, int, str | None]] = []
    for method, _, _ in CASES:
        status, payload = await _raw_post(a.http_port, f"/v1.0/invoke/b/method/{method}")
        paths = _app_paths(log)
        outcomes.append((method, status, paths[seen] if len(paths) > seen else None))
        assert len(paths) - seen <= 1, (method, paths[seen:])
        seen = len(paths)
        assert SECRET not in payload, method
        if status in (400, 403):
            body = json.loads(payload)
            assert body["errorCode"] == "ERR_DIRECT_INVOKE", body
            want = "invalid method: " if status == 400 else "access control policy has denied"
            assert want in body["message"], body
    assert outcomes == CASES
    assert SECRET not in log.read_bytes()

    # The same methods, raw, straight to the callee's internal port as caller "a": the callee
    # normalizes for itself and never serves the secret.
    channel = Channel("127.0.0.1", b.internal_port, ssl=svid_client_context(cluster, ca, "a"))
    stub = ServiceInvocationStub(channel)
    try:
        for raw in (
            "public/../admin/secret.txt",
            "public/%2e%2e/admin/secret.txt",
            "/public/..%2Fadmin/secret.txt",
            "public/../../../admin/secret.txt",
        ):
            with pytest.raises(GRPCError) as err:
                await stub.CallLocal(_raw_request(raw), timeout=10)
            assert err.value.status is Status.PERMISSION_DENIED, raw
        for raw in ("public/a\x00b", "public/a%00b", "public/%zz"):
            with pytest.raises(GRPCError) as err:
                await stub.CallLocal(_raw_request(raw), timeout=10)
            assert err.value.status is Status.INVALID_ARGUMENT, raw
            assert "invalid method" in (err.value.message or ""), raw
        ok = await stub.CallLocal(_raw_request("public/./hello.txt"), timeout=10)
        assert messages.response_from_proto(ok).body == PUBLIC
    finally:
        channel.close()
    assert _app_paths(log)[seen:] == ["/public/hello.txt"]
    assert SECRET not in log.read_bytes()
