"""daprd's mTLS counters (``pkg/diagnostics/service_monitoring.go``), on a given registry.

Each process (or test) passes its own ``CollectorRegistry`` so Sentry and daprd never collide.
``prometheus_client`` appends ``_total`` to counter names, giving Dapr's exported names.

:class:`pysentry.security.events.EarlySecurityMetrics` stands in for these counters until daprd
has its first identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter


@dataclass(frozen=True, slots=True)
class SecurityMetrics:
    """``dapr_runtime_mtls_{init,init_fail,workload_cert_rotated,workload_cert_rotated_fail}_total``."""

    app_id: str
    init: Counter
    init_fail: Counter
    rotated: Counter
    rotated_fail: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry, app_id: str = "") -> SecurityMetrics:
        from prometheus_client import Counter

        return cls(
            app_id,
            Counter(
                "dapr_runtime_mtls_init",
                "The number of successful mTLS authenticator initialization.",
                ["app_id"],
                registry=registry,
            ),
            Counter(
                "dapr_runtime_mtls_init_fail",
                "The number of mTLS authenticator init failures.",
                ["app_id", "reason"],
                registry=registry,
            ),
            Counter(
                "dapr_runtime_mtls_workload_cert_rotated",
                "The number of the successful workload certificate rotations.",
                ["app_id"],
                registry=registry,
            ),
            Counter(
                "dapr_runtime_mtls_workload_cert_rotated_fail",
                "The number of the failed workload certificate rotations.",
                ["app_id", "reason"],
                registry=registry,
            ),
        )

    def initialized(self) -> None:
        self.init.labels(app_id=self.app_id).inc()

    def init_failed(self, reason: str) -> None:
        self.init_fail.labels(app_id=self.app_id, reason=reason).inc()

    def cert_rotated(self) -> None:
        self.rotated.labels(app_id=self.app_id).inc()

    def cert_rotation_failed(self, reason: str) -> None:
        self.rotated_fail.labels(app_id=self.app_id, reason=reason).inc()
