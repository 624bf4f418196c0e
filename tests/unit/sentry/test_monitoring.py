"""Expiry warnings with an injected clock, metric names and help texts, /healthz."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from pysentry.sentry.httpserve import PlainHttpServer
from pysentry.sentry.monitoring import (
    ExpiryWarnings,
    Health,
    SentryMetrics,
    expiry_warning,
    healthz_routes,
    metrics_routes,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)

WARNINGS = [
    ("far", timedelta(days=90), None),
    ("just-outside", timedelta(days=30, seconds=1), None),
    (
        "30-days",
        timedelta(days=30) - timedelta(seconds=1),
        "Dapr root certificate expiration warning: certificate expires in 29 days and 23 hours",
    ),
    (
        "mixed",
        timedelta(days=3, hours=5, minutes=59),
        "Dapr root certificate expiration warning: certificate expires in 3 days and 5 hours",
    ),
    (
        "under-an-hour",
        timedelta(minutes=10),
        "Dapr root certificate expiration warning: certificate expires in 0 days and 0 hours",
    ),
    ("now", timedelta(0), "Dapr root certificate expiration warning: certificate has expired."),
    (
        "past",
        -timedelta(days=2),
        "Dapr root certificate expiration warning: certificate has expired.",
    ),
]


@pytest.mark.parametrize(
    ("left", "expected"), [w[1:] for w in WARNINGS], ids=[w[0] for w in WARNINGS]
)
def test_expiry_warning_strings(left: timedelta, expected: str | None) -> None:
    assert expiry_warning("root", NOW + left, NOW) == expected


def test_hourly_checks_with_a_fake_clock(caplog: pytest.LogCaptureFixture) -> None:
    now = [NOW]
    root_not_after = NOW + timedelta(days=31)
    issuer_not_after = NOW + timedelta(days=40)
    warnings = ExpiryWarnings(lambda: (root_not_after, issuer_not_after), clock=lambda: now[0])
    caplog.set_level(logging.DEBUG, logger="pysentry.sentry.monitoring")
    assert warnings.check() == ()
    now[0] = NOW + timedelta(days=1, hours=1)  # 29 days 23 hours left for the root
    assert warnings.check() == (
        "Dapr root certificate expiration warning: certificate expires in 29 days and 23 hours",
    )
    now[0] = NOW + timedelta(days=39)
    assert warnings.check() == (
        "Dapr root certificate expiration warning: certificate has expired.",
        "Dapr issuer certificate expiration warning: certificate expires in 1 days and 0 hours",
    )
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warned][-1].startswith("Dapr issuer certificate expiration")


def test_metric_names_and_help_texts() -> None:
    metrics = SentryMetrics()
    metrics.sign_request_received()
    metrics.sign_failed()
    metrics.sign_succeeded()
    metrics.ca_loaded(issuer_not_after=NOW, root_not_after=NOW + timedelta(days=1))
    text = metrics.render().decode()
    expected_help = [
        ("cert_sign_request_received_total", "The number of CSRs received."),
        ("cert_sign_success_total", "The number of certificates issuances that have succeeded."),
        ("cert_sign_failure_total", "The number of errors occurred when signing the CSR."),
        (
            "servercert_issue_failed_total",
            "The number of server TLS certificate issuance failures.",
        ),
        (
            "issuercert_changed_total",
            "The number of issuer cert updates, when issuer cert or key is changed",
        ),
        (
            "issuercert_expiry_timestamp",
            "The unix timestamp, in seconds, when issuer/root cert will expire.",
        ),
    ]
    for name, help_text in expected_help:
        assert f"# HELP dapr_sentry_{name} {help_text}\n" in text, name
    assert 'dapr_sentry_cert_sign_failure_total{reason="sign"} 1.0' in text
    samples = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert float(samples["dapr_sentry_issuercert_expiry_timestamp"]) == NOW.timestamp()
    assert float(samples["dapr_sentry_rootcert_expiry_timestamp"]) == NOW.timestamp() + 86400
    assert "dapr_sentry_rootcert_expiry_timestamp" in text
    assert "dapr_sentry_issuercert_reload_failed_total 0.0" in text


async def test_healthz_and_metrics_endpoints() -> None:
    health = Health()
    health.add_target("sentry-jwks-validator")
    server = PlainHttpServer({**healthz_routes(health), **metrics_routes(SentryMetrics())})
    await server.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{server.port}") as client:
            resp = await client.get("/healthz")
            assert resp.status == 503
            assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
            body = json.loads(await resp.text())
            assert body["not_ready"] == [
                "healthz-server",
                "metrics-exporter",
                "security-provider",
                "sentry-server",
                "sentry-jwks-validator",
            ]
            for name in body["not_ready"]:
                health.set_ready(name)
            health.set_detail("issuer-credentials", "reload rejected: bad")
            resp = await client.get("/healthz")
            assert resp.status == 200
            assert json.loads(await resp.text()) == {
                "status": "ok",
                "not_ready": [],
                "detail": {"issuer-credentials": "reload rejected: bad"},
            }
            for path in ("/", "/metrics"):
                resp = await client.get(path)
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain; version=")
                assert "dapr_sentry_cert_sign_success_total" in await resp.text()
    finally:
        await server.close()
