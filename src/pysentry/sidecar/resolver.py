"""daprd's side of name resolution: :mod:`pysentry.nameresolution` with daprd's errors.

The components live in :mod:`pysentry.nameresolution` (the CLI imports them from there). This
module turns a resolver's "no address" into daprd's :class:`InvocationError` (HTTP 500
``ERR_DIRECT_INVOKE``: ``failed to invoke, id: <app>, err: no host found with the given ID``) and
keeps the old import path ``pysentry.sidecar.resolver`` working.
"""

from __future__ import annotations

import logging
from datetime import datetime

from pysentry.config.configuration import Configuration
from pysentry.nameresolution import (
    KubernetesResolver,
    NameResolver,
    Registration,
    ResolutionError,
    SqliteSettings,
    default_db_path,
    from_spec,
)
from pysentry.nameresolution import SqliteResolver as _SqliteResolver
from pysentry.sidecar.invocation import InvocationError

log = logging.getLogger(__name__)

__all__ = [
    "KubernetesResolver",
    "Registration",
    "SidecarResolver",
    "SqliteResolver",
    "SqliteSettings",
    "default_db_path",
    "resolver_from_config",
]


class SqliteResolver(_SqliteResolver):
    """:class:`pysentry.nameresolution.SqliteResolver` raising :class:`InvocationError`."""

    def resolve(self, app_id: str, namespace: str) -> str:
        try:
            return super().resolve(app_id, namespace)
        except ResolutionError as err:
            raise InvocationError(str(err)) from err


class SidecarResolver:
    """Any :class:`NameResolver`, with resolution errors as :class:`InvocationError`."""

    def __init__(self, inner: NameResolver) -> None:
        self.inner = inner

    def register(self, registration: Registration) -> None:
        self.inner.register(registration)

    def update_identity(self, spiffe_id: str, cert_expiry_at: datetime | None) -> None:
        self.inner.update_identity(spiffe_id, cert_expiry_at)

    def resolve(self, app_id: str, namespace: str) -> str:
        try:
            return self.inner.resolve(app_id, namespace)
        except ResolutionError as err:
            raise InvocationError(str(err)) from err

    def invalidate(self, app_id: str, namespace: str) -> None:
        self.inner.invalidate(app_id, namespace)

    def unregister(self) -> None:
        self.inner.unregister()

    async def run(self) -> None:
        await self.inner.run()

    def close(self) -> None:
        self.inner.close()


def resolver_from_config(cfg: Configuration, *, internal_port: int) -> SidecarResolver:
    """The resolver ``spec.nameResolution`` asks for (``sqlite`` on ``~/.dapr/nr.db`` if none)."""
    nr = cfg.spec.name_resolution
    component = nr.component if nr is not None else ""
    configuration = dict(nr.configuration or {}) if nr is not None else {}
    return SidecarResolver(from_spec(component, configuration, internal_port=internal_port))
