"""Sentry's metrics (spec §8.3), ``/healthz`` (§8.4) and the legacy expiry warnings (§8.2).

Metric names and help texts are Dapr's. Ours on top: ``dapr_sentry_rootcert_expiry_timestamp``
(earliest trust-anchor NotAfter) and ``dapr_sentry_issuercert_reload_failed_total``.
``/healthz`` answers 200 or 503 with a JSON body:
``{"status": ..., "not_ready": [...], "detail": {...}}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from pysentry.clock import Clock, system_clock
from pysentry.sentry.httpserve import Reply, Route

log = logging.getLogger(__name__)

EXPIRY_WARNING_WINDOW = timedelta(days=30)
EXPIRY_CHECK_INTERVAL = timedelta(hours=1)
ExpirySource = Callable[[], tuple[datetime, datetime]]
"""Returns ``(root_not_after, issuer_not_after)`` of the bundle in use."""
HEALTH_TARGETS = ("healthz-server", "metrics-exporter", "security-provider", "sentry-server")


class SentryMetrics:
    """The ``dapr_sentry_*`` metrics, in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.received = Counter(
            "dapr_sentry_cert_sign_request_received", "The number of CSRs received.", registry=r
        )
        self.success = Counter(
            "dapr_sentry_cert_sign_success",
            "The number of certificates issuances that have succeeded.",
            registry=r,
        )
        self.failure = Counter(
            "dapr_sentry_cert_sign_failure",
            "The number of errors occurred when signing the CSR.",
            ["reason"],
            registry=r,
        )
        self.servercert_failed = Counter(
            "dapr_sentry_servercert_issue_failed",
            "The number of server TLS certificate issuance failures.",
            registry=r,
        )
        self.issuercert_changed = Counter(
            "dapr_sentry_issuercert_changed",
            "The number of issuer cert updates, when issuer cert or key is changed",
            registry=r,
        )
        self.issuercert_expiry = Gauge(
            "dapr_sentry_issuercert_expiry_timestamp",
            "The unix timestamp, in seconds, when issuer/root cert will expire.",
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.rootcert_expiry = Gauge(
            "dapr_sentry_rootcert_expiry_timestamp",
            "The unix timestamp, in seconds, when the earliest trust anchor (root) will expire.",
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.reload_failed = Counter(
            "dapr_sentry_issuercert_reload_failed",
            "The number of issuer credential reloads rejected because the files are invalid or "
            "unreadable.",
            registry=r,
        )
        self.exposition: CollectorRegistry = self.registry
        """What ``/metrics`` renders: this registry, or it merged with the workers' metrics."""

    def sign_request_received(self) -> None:
        self.received.inc()

    def sign_succeeded(self) -> None:
        self.success.inc()

    def sign_failed(self) -> None:
        self.failure.labels(reason="sign").inc()

    def ca_loaded(self, *, issuer_not_after: datetime, root_not_after: datetime) -> None:
        self.issuercert_expiry.set(issuer_not_after.timestamp())
        self.rootcert_expiry.set(root_not_after.timestamp())

    def render(self) -> bytes:
        return generate_latest(self.exposition)


class Health:
    """Named readiness targets plus free-form details (e.g. a rejected credentials reload)."""

    def __init__(self, targets: tuple[str, ...] = HEALTH_TARGETS) -> None:
        self._ready = dict.fromkeys(targets, False)
        self._detail: dict[str, str] = {}

    def add_target(self, name: str) -> None:
        self._ready.setdefault(name, False)

    def set_ready(self, name: str, ready: bool = True) -> None:
        self._ready[name] = ready

    def set_detail(self, name: str, text: str | None) -> None:
        if text is None:
            self._detail.pop(name, None)
        else:
            self._detail[name] = text

    def not_ready(self) -> tuple[str, ...]:
        return tuple(name for name, ready in self._ready.items() if not ready)

    def report(self) -> tuple[int, dict[str, object]]:
        missing = self.not_ready()
        body: dict[str, object] = {
            "status": "ok" if not missing else "not ready",
            "not_ready": list(missing),
            "detail": dict(self._detail),
        }
        return (200 if not missing else 503), body


def healthz_routes(health: Health) -> dict[str, Route]:
    def healthz() -> Reply:
        status, body = health.report()
        return Reply(status, "application/json; charset=utf-8", json.dumps(body).encode())

    return {"/healthz": healthz}


def metrics_routes(metrics: SentryMetrics) -> dict[str, Route]:
    def render() -> Reply:
        return Reply(200, CONTENT_TYPE_LATEST, metrics.render())

    return {"/": render, "/metrics": render}


def expiry_warning(kind: str, not_after: datetime, now: datetime) -> str | None:
    """The ≤v1.11 warning for ``kind`` ("root" or "issuer"), or None when not due yet."""
    if now >= not_after:
        return f"Dapr {kind} certificate expiration warning: certificate has expired."
    if not_after - EXPIRY_WARNING_WINDOW < now:
        hours = int((not_after - now).total_seconds() // 3600)
        return (
            f"Dapr {kind} certificate expiration warning: certificate expires in "
            f"{hours // 24} days and {hours % 24} hours"
        )
    return None


class ExpiryWarnings:
    """Hourly check of the root and issuer expiry; warnings from 30 days before (spec §8.2)."""

    def __init__(
        self,
        expiries: ExpirySource,
        clock: Clock = system_clock,
        interval: timedelta = EXPIRY_CHECK_INTERVAL,
    ) -> None:
        self._expiries = expiries
        self._clock = clock
        self._interval = interval

    def check(self) -> tuple[str, ...]:
        """Log (and return) the warnings due now."""
        now = self._clock()
        root_not_after, issuer_not_after = self._expiries()
        emitted = []
        for kind, not_after in (("root", root_not_after), ("issuer", issuer_not_after)):
            message = expiry_warning(kind, not_after, now)
            if message is None:
                log.debug("Dapr %s certificate is still valid for %s", kind, not_after - now)
            else:
                log.warning("%s", message)
                emitted.append(message)
        return tuple(emitted)

    async def run(self) -> None:
        """Check at start, then every hour, until cancelled."""
        while True:
            self.check()
            await asyncio.sleep(self._interval.total_seconds())
