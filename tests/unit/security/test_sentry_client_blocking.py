"""``SentryClient.sign_blocking`` (daprd's first certificate, before asyncio) against ``sign``:
the same requests, retries, pauses, results and errors, case by case."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any

import pytest
from grpclib.const import Status
from grpclib.server import Server

from pysentry.pki.csr import build_csr
from pysentry.pki.keys import generate_key
from pysentry.security.sentry_client import SentryClient, drive
from pysentry.security.sentry_failure import SentryRequestFailed
from pysentry.spiffe import SpiffeId
from pysentry.testing import TestCA
from tests.unit.security.test_sentry_client import (
    SENTRY_ID,
    FakeClock,
    Running,
    _start,
)

CASES: dict[str, dict[str, Any]] = {
    "ok": {},
    "unavailable twice": {"fail_first": 2},
    "permission denied": {"refuse": (Status.PERMISSION_DENIED, "token is missing")},
    "shedding": {"fail_first": 3, "fail_status": Status.RESOURCE_EXHAUSTED},
    "shedding past the patience": {"fail_first": 999, "fail_status": Status.RESOURCE_EXHAUSTED},
    "no valid_until": {"omit_valid_until": True},
    "signed for another app": {"sign_as": "other"},
}


class BlockingClock(FakeClock):
    def sleep_now(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.now += timedelta(seconds=seconds)


def _client(run: Running, clock: BlockingClock, anchors: Any = None) -> SentryClient:
    return SentryClient(
        run.address,
        anchors or (run.ca.root_cert,),
        control_plane_trust_domain="public",
        clock=clock,
        sleep=clock.sleep,
        blocking_sleep=clock.sleep_now,
        rand=lambda: 0.5,
        attempt_timeout=timedelta(seconds=3),
    )


async def _outcome(call: Any, address: str) -> tuple[str, str, str | None]:
    try:
        chain = await call
    except SentryRequestFailed as err:
        return str(err).replace(address, "<sentry>"), err.reason, err.status
    return f"chain of {len(chain)}", "", None


async def _both(
    servers: list[Server], sentry_id: SpiffeId, anchors: Any = None, **fake: Any
) -> list[tuple[Any, ...]]:
    """(outcome, pauses, requests sent) of ``sign`` then ``sign_blocking``, each against a new
    fake Sentry made with ``fake``."""
    csr = build_csr(generate_key())
    ca = TestCA.create("public")
    results = []
    for blocking in (False, True):
        run = await _start(ca, sentry_id, servers, **fake)
        clock = BlockingClock()
        client = _client(run, clock, anchors)
        kw: dict[str, Any] = {"app_id": "a", "namespace": "default", "token": "t"}
        call = (
            asyncio.to_thread(client.sign_blocking, csr, **kw)
            if blocking
            else client.sign(csr, **kw)
        )
        got = await _outcome(call, run.address)
        sent = [(r.id, r.token, r.certificate_signing_request) for r in run.sentry.requests]
        results.append((got, clock.calls, sent))
    return results


@pytest.mark.parametrize("name", sorted(CASES))
async def test_blocking_sign_does_what_sign_does(name: str, servers: list[Server]) -> None:
    ours, blocking = await _both(servers, SENTRY_ID, **CASES[name])
    assert blocking == ours
    assert ours[2]  # the case reached Sentry


async def test_blocking_sign_refuses_a_server_that_is_not_sentry(servers: list[Server]) -> None:
    impostor = SpiffeId.parse("spiffe://public/ns/default/not-sentry")
    ours, blocking = await _both(servers, impostor)
    assert blocking == ours
    assert "unexpected SPIFFE ID" in blocking[0][0]
    assert blocking[2] == []  # the token never left


async def test_blocking_sign_refuses_sentry_of_another_root(servers: list[Server]) -> None:
    ours, blocking = await _both(servers, SENTRY_ID, (TestCA.create("public").root_cert,))
    assert blocking == ours
    assert "does not verify against the trust anchors" in blocking[0][0]
    assert blocking[2] == []


def test_blocking_sign_connection_refused_after_five_attempts() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pauses: list[float] = []
    client = SentryClient(
        f"127.0.0.1:{port}", (TestCA.create("public").root_cert,), blocking_sleep=pauses.append
    )
    with pytest.raises(SentryRequestFailed) as info:
        client.sign_blocking(build_csr(generate_key()), app_id="a", namespace="default")
    assert str(info.value) == (
        f"failed to connect to Sentry at '127.0.0.1:{port}': connection refused; is sentry running?"
    )
    assert info.value.reason == "sentry_conn"
    assert len(pauses) == 4 and all(0.045 <= p <= 0.055 for p in pauses)


async def test_blocking_sign_times_out_as_sign_does() -> None:
    # A listener that never answers (the handshake hangs): each attempt ends at its timeout.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        anchors = (TestCA.create("public").root_cert,)
        outcomes = []
        for blocking in (False, True):
            clock = BlockingClock()
            client = SentryClient(
                address,
                anchors,
                sleep=clock.sleep,
                blocking_sleep=clock.sleep_now,
                attempt_timeout=timedelta(milliseconds=100),
            )
            csr = build_csr(generate_key())
            kw: dict[str, Any] = {"app_id": "a", "namespace": "default"}
            call = (
                asyncio.to_thread(client.sign_blocking, csr, **kw)
                if blocking
                else client.sign(csr, **kw)
            )
            outcomes.append((await _outcome(call, address), len(clock.calls)))
    assert (
        outcomes[0]
        == outcomes[1]
        == (
            (
                "failed to connect to Sentry at '<sentry>': no answer within 0.1s (5 attempts); "
                "is sentry running and reachable?",
                "sentry_conn",
                None,
            ),
            4,
        )
    )


def test_drive_refuses_a_coroutine_that_suspends() -> None:
    async def suspends() -> None:
        await asyncio.sleep(0)

    coro: Coroutine[Any, Any, None] = suspends()
    with pytest.raises(RuntimeError, match="suspended"):
        drive(coro)
