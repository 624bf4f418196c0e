"""What every name resolver shares: the registration, the error, the resolver protocol."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pysentry.errors import PysentryError


class ResolutionError(PysentryError):
    """No address for an app-id. The text is the resolver's own, as daprd prints it."""


@dataclass(frozen=True, slots=True)
class Registration:
    """One sidecar instance as seen by name resolution (and by ``dapr list``)."""

    app_id: str
    namespace: str
    address: str
    pid: int = 0
    http_port: int = 0
    metrics_port: int = 0
    app_port: int = 0
    spiffe_id: str = ""
    cert_expiry_at: datetime | None = None
    last_update_at: datetime | None = None


class NameResolver(Protocol):
    """What daprd needs from a name resolution component."""

    def register(self, registration: Registration) -> None: ...

    def update_identity(self, spiffe_id: str, cert_expiry_at: datetime | None) -> None: ...

    def resolve(self, app_id: str, namespace: str) -> str: ...

    def invalidate(self, app_id: str, namespace: str) -> None: ...

    def unregister(self) -> None: ...

    async def run(self) -> None: ...

    def close(self) -> None: ...
