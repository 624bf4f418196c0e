"""EarlySecurityMetrics: daprd's first-identity counters before prometheus_client is loaded."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from pysentry.security.events import EarlySecurityMetrics
from pysentry.security.metrics import SecurityMetrics


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {"app_id": "app", **labels})


def test_events_before_attach_are_replayed_then_forwarded() -> None:
    early = EarlySecurityMetrics()
    early.init_failed("sentry_conn")
    early.initialized()
    registry = CollectorRegistry()
    assert value(registry, "dapr_runtime_mtls_init_total") is None
    early.attach(SecurityMetrics.create(registry, "app"))
    assert value(registry, "dapr_runtime_mtls_init_total") == 1
    fail = "dapr_runtime_mtls_init_fail_total"
    assert value(registry, fail, reason="sentry_conn") == 1
    early.cert_rotated()
    early.cert_rotation_failed("sign")
    assert value(registry, "dapr_runtime_mtls_workload_cert_rotated_total") == 1
    rotated_fail = "dapr_runtime_mtls_workload_cert_rotated_fail_total"
    assert value(registry, rotated_fail, reason="sign") == 1
    again = CollectorRegistry()
    early.attach(SecurityMetrics.create(again, "app"))  # what was replayed is not replayed again
    assert value(again, "dapr_runtime_mtls_init_total") is None
