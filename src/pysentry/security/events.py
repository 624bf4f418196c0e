"""What the security provider records, and a stand-in that keeps it for later.

daprd counts its first identity before ``prometheus_client`` (and the rest of the metrics) is
imported: :class:`EarlySecurityMetrics` keeps the events and replays them, in order, into the
:class:`pysentry.security.metrics.SecurityMetrics` it is attached to, then forwards them
(issue 13: identity first). Only ``typing`` is imported here.
"""

from __future__ import annotations

from typing import Protocol


class SecurityEvents(Protocol):
    """What the security provider records."""

    def initialized(self) -> None: ...

    def init_failed(self, reason: str) -> None: ...

    def cert_rotated(self) -> None: ...

    def cert_rotation_failed(self, reason: str) -> None: ...


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
