"""Name resolution components, below the daemons (daprd and the CLI both use this package).

- ``sqlite``: Dapr's components-contrib ``nameresolution/sqlite`` v1.16, same file format, so a
  Go daprd and a pysentry daprd share one database (:mod:`.sqlite`);
- ``kubernetes``: Dapr's template resolver, no API server needed (:mod:`.kubernetes`).

:func:`from_spec` picks one from ``spec.nameResolution``. With no ``nameResolution`` at all,
pysentry uses ``sqlite`` on ``$DAPR_HOME/nr.db``, else ``$HOME/.dapr/nr.db`` (Dapr's self-hosted
default is mDNS, which pysentry does not implement). Any other component name gets a warning and
the same default.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from pysentry.clock import Clock, system_clock
from pysentry.errors import ConfigError
from pysentry.nameresolution.base import NameResolver, Registration, ResolutionError
from pysentry.nameresolution.kubernetes import KubernetesResolver
from pysentry.nameresolution.sqlite import NO_HOST, RegistrationLost, SqliteResolver
from pysentry.nameresolution.sqlite_settings import SqliteSettings, default_db_path

log = logging.getLogger(__name__)

SUPPORTED = ("sqlite", "kubernetes")

__all__ = [
    "NO_HOST",
    "SUPPORTED",
    "KubernetesResolver",
    "NameResolver",
    "Registration",
    "RegistrationLost",
    "ResolutionError",
    "SqliteResolver",
    "SqliteSettings",
    "default_db_path",
    "from_spec",
]


def from_spec(
    component: str,
    configuration: Mapping[str, object],
    *,
    internal_port: int,
    env: Mapping[str, str] | None = None,
    default_path: Path | None = None,
    clock: Clock = system_clock,
) -> SqliteResolver | KubernetesResolver:
    """The resolver for ``spec.nameResolution`` (``component`` ``""`` when absent)."""
    name = component.strip().lower()
    if name == "kubernetes":
        return KubernetesResolver(configuration, port=internal_port)
    if name == "sqlite":
        settings = SqliteSettings.from_metadata(
            configuration, env=env, require_connection_string=True
        )
        return SqliteResolver(settings, clock=clock)
    if name:
        log.warning(
            "Name resolution component %r is not supported by pysentry (supported: %s); using "
            "'sqlite' on %s. mDNS is not implemented: set nameResolution.component to sqlite "
            "with a connectionString shared by all sidecars",
            component,
            ", ".join(SUPPORTED),
            default_path or default_db_path(env),
        )
    settings = SqliteSettings.from_metadata({}, env=env)
    if default_path is not None:
        settings = SqliteSettings(default_path)
    try:
        return SqliteResolver(settings, clock=clock)
    except OSError as err:
        raise ConfigError(
            f"name resolution database {str(settings.path)!r}: cannot open: {err}"
        ) from err
