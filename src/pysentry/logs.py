"""Dapr-shaped log records, as text (logrus style) or JSON (``--log-as-json``).

Only entry points call :func:`configure`; libraries just use ``logging.getLogger(__name__)``.

Text (logrus ``TextFormatter``: ``time``, ``level``, ``msg`` first, then the other fields sorted,
values quoted only when they need it)::

    time="2024-01-01T00:00:00.123456Z" level=info msg="Security is initialized successfully" \
app_id=myapp instance=host scope=dapr.runtime.security type=log ver=0.1.0

JSON (keys sorted, as Go's encoder does)::

    {"app_id":"myapp","instance":"host","level":"info","msg":"...","scope":"dapr.sentry",
     "time":"2024-01-01T00:00:00.123456Z","type":"log","ver":"0.1.0"}

Level names are Dapr's (logrus): ``debug``, ``info``, ``warning``, ``error``, ``fatal``. The time
is UTC in Go's RFC3339Nano shape (trailing zeros of the fraction dropped). A record may override
the scope with ``extra={"scope": "dapr.sentry.ca"}`` (else the logger's scope from
:func:`configure`'s ``scopes``) and add fields with
``extra={"fields": {"method": "GET"}}``.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

from pysentry import __version__
from pysentry.errors import ConfigError

LEVELS: Mapping[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
}
_LEVEL_NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "fatal",
}
# Third-party loggers that are chatty below WARNING (watchfiles reports every change at INFO,
# hpack/h2 log every frame at DEBUG).
_QUIET = ("watchfiles", "hpack", "h2", "asyncio", "aiohttp.access")
_BARE = re.compile(r"^[A-Za-z0-9\-._/@^+]+$")


def level_name(levelno: int) -> str:
    """Dapr's name for a stdlib level number (the nearest lower standard level)."""
    for number in sorted(_LEVEL_NAMES, reverse=True):
        if levelno >= number:
            return _LEVEL_NAMES[number]
    return "debug"


def format_time(at: datetime) -> str:
    """Go ``time.RFC3339Nano`` in UTC: ``2024-01-01T00:00:00.1234Z`` (no trailing zeros)."""
    at = at.astimezone(UTC)
    text = at.strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{at.microsecond:06d}".rstrip("0")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"


def _quote(value: str) -> str:
    """logrus quoting: bare when only ``[A-Za-z0-9-._/@^+]``, else a Go ``%q`` string."""
    if value == "" or _BARE.match(value):
        return value
    return json.dumps(value, ensure_ascii=False)


class DaprFormatter(logging.Formatter):
    """Formats records with Dapr's fields. ``as_json`` picks the JSON shape."""

    def __init__(
        self,
        *,
        as_json: bool,
        scope: str,
        app_id: str | None = None,
        instance: str | None = None,
        version: str = __version__,
        scopes: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.as_json = as_json
        self.scope = scope
        self.scopes = dict(scopes or {})
        self._scope_of: dict[str, str] = {}
        self.app_id = app_id
        self.instance = instance if instance is not None else socket.gethostname()
        self.version = version

    def fields(self, record: logging.LogRecord) -> dict[str, str]:
        """All fields of one record, ``msg`` included (with any traceback appended)."""
        msg = record.getMessage()
        if record.exc_info:
            msg = f"{msg}\n{self.formatException(record.exc_info)}"
        elif record.exc_text:
            msg = f"{msg}\n{record.exc_text}"
        fields: dict[str, str] = {
            "time": format_time(datetime.fromtimestamp(record.created, UTC)),
            "level": level_name(record.levelno),
            "msg": msg,
            "scope": str(getattr(record, "scope", None) or self.scope_for(record.name)),
            "instance": self.instance,
            "type": "log",
            "ver": self.version,
        }
        if self.app_id:
            fields["app_id"] = self.app_id
        extra: Any = getattr(record, "fields", None)
        if isinstance(extra, Mapping):
            for key, value in extra.items():
                fields.setdefault(str(key), str(value))
        return fields

    def scope_for(self, logger: str) -> str:
        """The scope of the longest ``scopes`` prefix of a logger's dotted name, else ``scope``."""
        found = self._scope_of.get(logger)
        if found is None:
            name = logger
            while name not in self.scopes and "." in name:
                name = name.rpartition(".")[0]
            found = self._scope_of[logger] = self.scopes.get(name, self.scope)
        return found

    def format(self, record: logging.LogRecord) -> str:
        fields = self.fields(record)
        if self.as_json:
            ordered = dict(sorted(fields.items()))
            return json.dumps(ordered, ensure_ascii=False, separators=(",", ":"))
        head = [f'time="{fields.pop("time")}"', f"level={fields.pop('level')}"]
        head.append(f"msg={_quote(fields.pop('msg'))}")
        head.extend(f"{key}={_quote(value)}" for key, value in sorted(fields.items()))
        return " ".join(head)


class _DaprHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marker type so :func:`configure` can replace its own handler and leave others alone."""


def parse_level(level: str) -> int:
    """``debug|info|warn|warning|error|fatal`` (any case) to a stdlib level number."""
    try:
        return LEVELS[level.strip().lower()]
    except KeyError:
        raise ConfigError(
            f"invalid log level {level!r}: use one of debug, info, warn, error, fatal"
        ) from None


def configure(
    level: str = "info",
    as_json: bool = False,
    scope: str = "dapr.sentry",
    app_id: str | None = None,
    *,
    stream: IO[str] | None = None,
    instance: str | None = None,
    scopes: Mapping[str, str] | None = None,
) -> logging.Handler:
    """Install (or replace) the Dapr-shaped handler on the root logger; return it.

    Writes to stdout by default, as Dapr does. Calling it again replaces the previous handler.
    ``scopes`` maps Python logger names (and their children) to Dapr scopes, as Dapr's
    per-package ``logger.NewLogger("dapr.runtime.http")``; other loggers get ``scope``.
    """
    levelno = parse_level(level)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _DaprHandler)]:
        root.removeHandler(old)
        old.close()
    handler = _DaprHandler(stream if stream is not None else sys.stdout)
    formatter = DaprFormatter(
        as_json=as_json, scope=scope, app_id=app_id, instance=instance, scopes=scopes
    )
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(levelno)
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(levelno, logging.WARNING))
    return handler
