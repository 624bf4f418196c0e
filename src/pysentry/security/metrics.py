"""daprd's mTLS counters (``pkg/diagnostics/service_monitoring.go``), on a given registry.

Each process (or test) passes its own ``CollectorRegistry`` so Sentry and daprd never collide.
``prometheus_client`` appends ``_total`` to counter names, giving Dapr's exported names.

:class:`EarlySecurityMetrics` lets daprd count its first identity before ``prometheus_client``
(and the rest of the metrics) is imported: it keeps the events and replays them into the
:class:`SecurityMetrics` it is attached to, then forwards (issue 13: identity first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter


class SecurityEvents(Protocol):
    """What the security provider records."""

    def initialized(self) -> None: ...

    def init_failed(self, reason: str) -> None: ...

    def cert_rotated(self) -> None: ...

    def cert_rotation_failed(self, reason: str) -> None: ...


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


class EarlySecurityMetrics:
    """Security events kept until :meth:`attach`, replayed in order, then forwarded."""

    def __init__(self) -> None:
        self._target: SecurityEvents | None = None
        self._pending: list[tuple[str, tuple[str, ...]]] = []

    def attach(self, target: SecurityEvents) -> None:
        self._target = target
        pending, self._pending = self._pending, []
        for name, args in pending:
            getattr(target, name)(*args)

    def _record(self, name: str, *args: str) -> None:
        if self._target is None:
            self._pending.append((name, args))
        else:
            getattr(self._target, name)(*args)

    def initialized(self) -> None:
        self._record("initialized")

    def init_failed(self, reason: str) -> None:
        self._record("init_failed", reason)

    def cert_rotated(self) -> None:
        self._record("cert_rotated")

    def cert_rotation_failed(self, reason: str) -> None:
        self._record("cert_rotation_failed", reason)
