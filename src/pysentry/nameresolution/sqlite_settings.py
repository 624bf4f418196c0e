"""Configuration of the ``sqlite`` resolver, as components-contrib v1.16 ``sqlite_metadata.go``.

Keys (``spec.nameResolution.configuration``): ``connectionString`` (alias ``url``; a path or a
``file:`` URI), ``updateInterval`` (default 5s, whole seconds, at least ``timeout`` + 1s),
``cleanupInterval`` (alias ``cleanupIntervalInSeconds``; default 1h; <= 0 disables the cleanup),
``timeout`` (alias ``timeoutInSeconds``; default 1s, at least 1s), ``busyTimeout`` (default
800ms), ``disableWAL`` (default false), ``tableName`` (default ``hosts``) and
``metadataTableName`` (default ``metadata``). Durations are Go durations or plain seconds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, unquote

from pysentry.errors import ConfigError

DEFAULT_UPDATE_INTERVAL = timedelta(seconds=5)
DEFAULT_CLEANUP_INTERVAL = timedelta(hours=1)
DEFAULT_TIMEOUT = timedelta(seconds=1)
DEFAULT_BUSY_TIMEOUT = timedelta(milliseconds=800)
_IDENTIFIER = re.compile(r"^[A-Za-z0-9_]+$")  # components-contrib ValidIdentifier
_FORBIDDEN_PRAGMAS = ("busy_timeout", "journal_mode", "foreign_keys")
_KEY = "nameResolution.configuration"


def default_db_path(env: Mapping[str, str] | None = None) -> Path:
    """``$DAPR_HOME/nr.db`` when ``DAPR_HOME`` is set (``dapr --home X run`` sets it for daprd,
    and ``dapr list``/``status`` read ``X/nr.db``), else ``$HOME/.dapr/nr.db`` (``HOME``
    honoured, as Dapr's CLI does)."""
    env = os.environ if env is None else env
    dapr_home = env.get("DAPR_HOME")
    if dapr_home:
        return Path(dapr_home).expanduser().absolute() / "nr.db"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".dapr" / "nr.db"


@dataclass(frozen=True, slots=True)
class SqliteSettings:
    path: Path
    update_interval: timedelta = DEFAULT_UPDATE_INTERVAL
    table: str = "hosts"
    metadata_table: str = "metadata"
    cleanup_interval: timedelta = DEFAULT_CLEANUP_INTERVAL
    timeout: timedelta = DEFAULT_TIMEOUT
    busy_timeout: timedelta = DEFAULT_BUSY_TIMEOUT
    disable_wal: bool = False

    def __post_init__(self) -> None:
        for name, value in (("tableName", self.table), ("metadataTableName", self.metadata_table)):
            if not _IDENTIFIER.match(value):
                raise ConfigError(
                    f"{_KEY}.{name}: invalid identifier for table name: {value!r} "
                    "(letters, digits and '_' only)"
                )
        if self.timeout < timedelta(seconds=1):
            raise ConfigError(
                f"{_KEY}.timeout: invalid value for 'timeout': must be greater than 1s: "
                f"{self.timeout!r}"
            )
        if self.update_interval.microseconds:
            raise ConfigError(
                f"{_KEY}.updateInterval: update interval must not contain fractions of seconds: "
                f"{self.update_interval!r}"
            )
        if self.update_interval - self.timeout < timedelta(seconds=1):
            raise ConfigError(
                f"{_KEY}.updateInterval: update interval must be at least 1s greater than "
                f"timeout ({self.update_interval!r} with timeout {self.timeout!r}); "
                "set updateInterval to 2s or more"
            )

    @property
    def interval_seconds(self) -> int:
        """The freshness window of a row, in whole seconds (``int(UpdateInterval.Seconds())``)."""
        return int(self.update_interval.total_seconds())

    @property
    def heartbeat_period(self) -> timedelta:
        """``UpdateInterval - Timeout`` (Go subtracts one more nanosecond)."""
        return self.update_interval - self.timeout

    @classmethod
    def from_metadata(
        cls,
        metadata: Mapping[str, object],
        *,
        env: Mapping[str, str] | None = None,
        require_connection_string: bool = False,
    ) -> SqliteSettings:
        """Parse the component's configuration; a missing ``connectionString`` is an error with
        ``require_connection_string`` (as in Dapr), else ``$HOME/.dapr/nr.db``."""
        conn = str(_get(metadata, "connectionString", "url") or "")
        if not conn and require_connection_string:
            raise ConfigError(
                f"{_KEY}.connectionString: missing connection string; set it to the path of "
                "the SQLite file all sidecars share, e.g. connectionString: /tmp/nr.db"
            )
        path = _path_from_connection_string(conn) if conn else default_db_path(env)
        return cls(
            path=path,
            update_interval=_duration(metadata, DEFAULT_UPDATE_INTERVAL, "updateInterval"),
            cleanup_interval=_duration(
                metadata, DEFAULT_CLEANUP_INTERVAL, "cleanupInterval", "cleanupIntervalInSeconds"
            ),
            timeout=_duration(metadata, DEFAULT_TIMEOUT, "timeout", "timeoutInSeconds"),
            busy_timeout=_duration(metadata, DEFAULT_BUSY_TIMEOUT, "busyTimeout"),
            disable_wal=_bool(metadata, "disableWAL"),
            table=str(_get(metadata, "tableName") or "hosts"),
            metadata_table=str(_get(metadata, "metadataTableName") or "metadata"),
        )


def _get(metadata: Mapping[str, object], *names: str) -> object:
    """Case-insensitive lookup with aliases (kit ``DecodeMetadata``)."""
    lowered = {str(k).lower(): v for k, v in metadata.items()}
    for name in names:
        value = lowered.get(name.lower())
        if value not in (None, ""):
            return value
    return None


def _duration(metadata: Mapping[str, object], default: timedelta, *names: str) -> timedelta:
    from pysentry.config.duration import parse_duration

    raw = _get(metadata, *names)
    if raw is None:
        return default
    text = str(raw).strip()
    try:
        if re.fullmatch(r"-?\d+", text):  # kit: a plain number is seconds
            return timedelta(seconds=int(text))
        return parse_duration(text)
    except (ConfigError, ValueError) as err:
        raise ConfigError(f"{_KEY}.{names[0]}: invalid duration: {raw!r} ({err})") from err


def _bool(metadata: Mapping[str, object], name: str) -> bool:
    raw = _get(metadata, name)
    if raw is None or isinstance(raw, bool):
        return bool(raw)
    text = str(raw).strip().lower()
    if text in ("true", "1", "yes", "y", "on"):
        return True
    if text in ("false", "0", "no", "n", "off"):
        return False
    raise ConfigError(f"{_KEY}.{name}: not a boolean: {raw!r} (use true or false)")


def _path_from_connection_string(conn: str) -> Path:
    """The file of a path or ``file:`` URI; the pragmas Dapr forbids there are refused."""
    body, _, query = conn.partition("?")
    for pragma in parse_qs(query).get("_pragma", []):
        for forbidden in _FORBIDDEN_PRAGMAS:
            if pragma.lower().startswith(forbidden):
                raise ConfigError(
                    f"{_KEY}.connectionString: found forbidden option '_pragma={forbidden}' in "
                    f"the connection string {conn!r}; use the busyTimeout/disableWAL properties"
                )
    lowered = body.lower()
    if lowered.startswith(":memory:") or lowered.startswith("file::memory:"):
        raise ConfigError(
            f"{_KEY}.connectionString: an in-memory database cannot be shared between sidecars: "
            f"{conn!r}; give a file path"
        )
    if lowered.startswith("file:"):
        body = body[len("file:") :]
        if body.startswith("//"):
            body = body[2:]
    return Path(unquote(body)).expanduser()
