"""pysentry daprd against Dapr v1.16.0's real Go daprd, through one shared ``sqlite`` resolver.

Both daprds get their SVIDs from the real pysentry ``sentry`` and share ``cluster.nr_db``
(``nameResolution: {component: sqlite, configuration: {connectionString: <file>}}``). Every
check runs from both callers: what the app sees, and what the caller's HTTP client gets, must
be the same whichever implementation sits on each side.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from typing import Any

import aiohttp
import pytest

from pysentry.testing import TestCA
from tests.e2e.conftest import Cluster, Daprd
from tests.interop.cl_app import blob
from tests.interop.daprbins import DaprBinaries
from tests.interop.realdapr import cl_app, go_daprd, kubernetes_config, py_daprd, pysentry_sentry

BODY_200K = bytes(range(256)) * 800  # 204 800 bytes


async def _call(
    caller: Daprd, verb: str, target: str, path: str, *, body: bytes = b"", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    url = f"{caller.url}/v1.0/invoke/{target}/method/{path}"
    async with (
        aiohttp.ClientSession() as s,
        s.request(verb, url, data=body or None, headers=headers) as r,
    ):
        return r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read()


@pytest.mark.parametrize("first", ["go", "pysentry"])
async def test_go_and_pysentry_daprd_find_each_other(
    dapr_bins: DaprBinaries, cluster: Cluster, first: str
) -> None:
    """Whichever starts first, each finds the other in the one sqlite file, and invocation
    carries verbs, path, query, headers, 200 KB bodies and statuses both ways."""
    sentry_port, anchors = await pysentry_sentry(cluster)
    _, go_app = await cluster.app("appGo")
    _, py_app = await cluster.app("appPy")
    daprds: dict[str, Daprd] = {}
    for kind in (first, "pysentry" if first == "go" else "go"):
        if kind == "go":
            daprds[kind] = await go_daprd(
                cluster, dapr_bins, "appGo", go_app, sentry_port=sentry_port, anchors_pem=anchors
            )
        else:
            daprds[kind] = await py_daprd(
                cluster, "appPy", py_app, sentry_port=sentry_port, anchors_pem=anchors
            )
    go, py = daprds["go"], daprds["pysentry"]
    for caller, callee, caller_id in ((py, "appGo", "appPy"), (go, "appPy", "appGo")):
        for verb in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            body = BODY_200K if verb in ("POST", "PUT") else b""
            status, headers, raw = await _call(
                caller, verb, callee, "echo/sub?a=1&b=two", body=body, **{"X-Interop": "yes"}
            )
            assert status == 200, (caller.app_id, verb, raw[:300])
            echoed: dict[str, Any] = json.loads(raw)
            assert (echoed["app"], echoed["method"]) == (callee, verb)
            assert (echoed["path"], echoed["query"]) == ("/echo/sub", "a=1&b=two")
            assert echoed["length"] == len(body)
            assert echoed["headers"]["x-interop"] == "yes"
            assert echoed["headers"]["dapr-caller-app-id"] == caller_id
            assert echoed["headers"]["dapr-callee-app-id"] == callee
            assert headers["x-from-app"] == callee
        status, _, raw = await _call(caller, "GET", callee, "echo?status=404")
        assert status == 404 and json.loads(raw)["app"] == callee
        status, _, raw = await _call(caller, "GET", callee, "big?n=200000")
        assert status == 200 and raw == b"x" * 200_000
    # An unknown app-id: the same answer from both callers (Dapr's sqlite "no host" error).
    answers = [await _call(d, "GET", "nobody", "x") for d in (go, py)]
    assert answers[0][0] == answers[1][0] == 500
    assert (
        json.loads(answers[0][2])
        == json.loads(answers[1][2])
        == {
            "errorCode": "ERR_DIRECT_INVOKE",
            "message": "failed to invoke, id: nobody, err: no host found with the given ID",
        }
    )


DENY_ALL = "  accessControl:\n    defaultAction: deny\n    trustDomain: public\n"


async def test_callee_errors_reach_the_caller_unmasked(
    dapr_bins: DaprBinaries, cluster: Cluster
) -> None:
    """ACL denial (403) and a dead app (500 ``error invoking app channel``), on a Go callee and on
    a pysentry callee: a pysentry caller answers exactly what a Go caller answers."""
    sentry_port, anchors = await pysentry_sentry(cluster)
    apps = {name: await cluster.app(name) for name in ("denyGo", "deadGo", "denyPy", "deadPy")}
    for name, (_, port) in apps.items():
        extra = DENY_ALL if name.startswith("deny") else ""
        if name.endswith("Go"):
            await go_daprd(
                cluster,
                dapr_bins,
                name,
                port,
                sentry_port=sentry_port,
                anchors_pem=anchors,
                config_extra=extra,
            )
        else:
            await py_daprd(
                cluster,
                name,
                port,
                sentry_port=sentry_port,
                anchors_pem=anchors,
                config_extra=extra,
            )
    go_caller = await go_daprd(
        cluster, dapr_bins, "callerGo", None, sentry_port=sentry_port, anchors_pem=anchors
    )
    py_caller = await py_daprd(
        cluster, "callerPy", None, sentry_port=sentry_port, anchors_pem=anchors
    )
    for name in ("deadGo", "deadPy"):
        apps[name][0].stop()  # the callee's app is gone
    for callee in ("denyGo", "denyPy"):
        for caller in (go_caller, py_caller):
            status, headers, raw = await _call(caller, "POST", callee, "echo", body=b"{}")
            assert status == 403, (caller.app_id, callee, raw)
            assert headers["content-type"].startswith("application/json")
            assert json.loads(raw) == {
                "errorCode": "ERR_DIRECT_INVOKE",
                "message": f"failed to invoke, id: {callee}, err: rpc error: code = "
                "PermissionDenied desc = access control policy has denied access to id: "
                f"spiffe://public/ns/default/{caller.app_id} operation: echo verb: POST",
            }
    for callee in ("deadGo", "deadPy"):
        answers = []
        for caller in (go_caller, py_caller):
            status, _, raw = await _call(caller, "POST", callee, "echo", body=b"{}")
            assert status == 500, (caller.app_id, callee, raw)
            err = json.loads(raw)
            assert err["errorCode"] == "ERR_DIRECT_INVOKE"
            assert err["message"].startswith(
                f"failed to invoke, id: {callee}, err: rpc error: code = Internal desc = "
                "error invoking app channel: "
            ), err
            answers.append(err["message"])
        assert answers[0] == answers[1], answers  # the callee's text, passed through as is
        # Go's *url.Error text, from either callee.
        assert re.search(
            r'app channel: Post "http://127\.0\.0\.1:\d+/echo": dial tcp 127\.0\.0\.1:\d+: '
            r"connect: connection refused$",
            answers[0],
        ), answers


async def test_content_length_reaches_apps_that_read_only_content_length(
    dapr_bins: DaprBinaries, cluster: Cluster
) -> None:
    """A 200 KB body and its Content-Length cross the internal hop both ways (no chunking), and
    a 200 KB response comes back whole."""
    sentry_port, anchors = await pysentry_sentry(cluster)
    _, go_app = await cl_app(cluster, "go")
    _, py_app = await cl_app(cluster, "py")
    go = await go_daprd(
        cluster, dapr_bins, "clGo", go_app, sentry_port=sentry_port, anchors_pem=anchors
    )
    py = await py_daprd(cluster, "clPy", py_app, sentry_port=sentry_port, anchors_pem=anchors)
    digest = hashlib.sha256(BODY_200K).hexdigest()
    for caller, callee in ((py, "clGo"), (go, "clPy"), (py, "clPy"), (go, "clGo")):
        status, _, raw = await _call(caller, "POST", callee, "len?x=1", body=BODY_200K)
        assert status == 200, (caller.app_id, callee, raw[:300])
        seen = json.loads(raw)
        assert seen["content_length"] == str(len(BODY_200K)), (caller.app_id, callee, seen)
        assert seen["transfer_encoding"] is None
        assert (seen["received"], seen["sha256"]) == (len(BODY_200K), digest)
        status, headers, raw = await _call(caller, "GET", callee, "blob?n=200000")
        assert status == 200 and raw == blob(200_000)
        assert headers["content-length"] == "200000"


async def test_rotation_with_a_short_ttl_costs_no_call(
    dapr_bins: DaprBinaries, cluster: Cluster
) -> None:
    """A 10 s TTL: both daprds renew several times during 12 s of calls both ways; none fails."""
    ca = TestCA.create("localhost")
    creds = cluster.tmp / "creds"
    creds.mkdir(mode=0o700)
    ca.write_credentials(creds)
    _, sentry_port = await cluster.sentry(creds, ttl="10s", skew="1s")
    anchors = ca.anchors_pem()
    _, go_app = await cluster.app("rotGo")
    _, py_app = await cluster.app("rotPy")
    go = await go_daprd(
        cluster, dapr_bins, "rotGo", go_app, sentry_port=sentry_port, anchors_pem=anchors
    )
    py = await py_daprd(cluster, "rotPy", py_app, sentry_port=sentry_port, anchors_pem=anchors)
    failures: list[str] = []
    ok = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 12
    async with aiohttp.ClientSession() as s:
        while loop.time() < deadline and ok < 5000:
            for caller, callee in ((py, "rotGo"), (go, "rotPy")):
                url = f"{caller.url}/v1.0/invoke/{callee}/method/echo"
                async with s.post(url, data=b"r") as r:
                    if r.status == 200:
                        ok += 1
                    else:
                        failures.append(f"{caller.app_id}->{callee}: {r.status} {await r.text()}")
        rotated = await py.metric(s, "dapr_runtime_mtls_workload_cert_rotated_total")
    renewed_go = go.proc.text().count("Successfully renewed workload identity")
    print(f"short-TTL rotation: ok={ok} failures={len(failures)} py={rotated:.0f} go={renewed_go}")
    assert failures == [], failures[:5]
    assert rotated >= 1 and renewed_go >= 1


async def test_kubernetes_resolver_template_pins_addresses_both_ways(
    dapr_bins: DaprBinaries, cluster: Cluster
) -> None:
    """``nameResolution: {component: kubernetes, configuration: {template: 127.0.0.1:PORT}}``
    in a pysentry daprd reaches a Go daprd, and the same in a Go daprd reaches ours."""
    sentry_port, anchors = await pysentry_sentry(cluster)
    _, go_app = await cluster.app("pinGo")
    _, py_app = await cluster.app("pinPy")
    go_callee = await go_daprd(
        cluster, dapr_bins, "pinGo", go_app, sentry_port=sentry_port, anchors_pem=anchors
    )
    py_callee = await py_daprd(
        cluster, "pinPy", py_app, sentry_port=sentry_port, anchors_pem=anchors
    )
    to_go = kubernetes_config(cluster, "to-go", f"127.0.0.1:{go_callee.internal_port}")
    to_py = kubernetes_config(cluster, "to-py", f"127.0.0.1:{py_callee.internal_port}")
    py_caller = await py_daprd(
        cluster,
        "pinCallerPy",
        None,
        sentry_port=sentry_port,
        anchors_pem=anchors,
        config=to_go,
    )
    go_caller = await go_daprd(
        cluster,
        dapr_bins,
        "pinCallerGo",
        None,
        sentry_port=sentry_port,
        anchors_pem=anchors,
        config=to_py,
    )
    for caller, callee in ((py_caller, "pinGo"), (go_caller, "pinPy")):
        status, _, raw = await _call(caller, "POST", callee, "echo", body=b"pinned")
        assert status == 200, (caller.app_id, raw[:300])
        assert json.loads(raw)["app"] == callee
    # The template gives one address for every app-id: the wrong app behind it is refused by
    # the mTLS authorizer (/ns/default/<app-id>), not reached.
    status, _, raw = await _call(py_caller, "POST", "someoneElse", "echo", body=b"x")
    assert status == 500 and b"someoneElse" in raw, raw
    assert b"no host found" not in raw and b"pinGo" in raw, raw
