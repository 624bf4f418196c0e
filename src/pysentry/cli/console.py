"""Output helpers shared by the ``dapr`` commands.

Status lines carry the Dapr CLI's prefixes (success, info, warning, pending emojis) so output
reads like the real CLI. Errors are not printed here: commands raise :class:`CliError` (or another
:class:`pysentry.errors.PysentryError`) and ``main()`` prints ``error: <msg>`` on stderr.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

from rich.console import Console

from pysentry.errors import PysentryError

SUCCESS = "✅  "
INFO = "ℹ️  "  # noqa: RUF001 - the emoji Dapr prints
WARNING = "⚠  "
PENDING = "⌛  "


class CliError(PysentryError):
    """A command failed; ``main()`` prints ``error: <msg>`` and exits with ``exit_code``."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


_json = False


def enable_json() -> None:
    """``--log-as-json``: status lines as Dapr's ``{"time":…,"status":…,"msg":…}``."""
    global _json
    _json = True


def _emit(prefix: str, message: str, status: str) -> None:
    if _json:
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        line = json.dumps({"time": now, "status": status, "msg": message}, ensure_ascii=False)
    else:
        line = prefix + message
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def success(message: str) -> None:
    _emit(SUCCESS, message, "success")


def info(message: str) -> None:
    _emit(INFO, message, "info")


def warning(message: str) -> None:
    _emit(WARNING, message, "warning")


def pending(message: str) -> None:
    _emit(PENDING, message, "pending")


def table_console() -> Console:
    """A console for rich tables: no markup guessing, no wrapping of long values in pipes."""
    return Console(highlight=False, soft_wrap=False, width=200 if not sys.stdout.isatty() else None)


def go_time(value: datetime) -> str:
    """Go's ``time.Time.String()`` for a UTC time: ``2027-11-22 19:05:29 +0000 UTC``."""
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%d %H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + " +0000 UTC"


def rfc1123(value: datetime) -> str:
    """Go's ``time.RFC1123`` for a UTC time: ``Mon, 22 Nov 2027 19:05:29 UTC``."""
    days = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    value = value.astimezone(UTC)
    return (
        f"{days[value.weekday()]}, {value.day:02d} {months[value.month - 1]} {value.year} "
        f"{value:%H:%M:%S} UTC"
    )


def hours_until(when: datetime, now: datetime) -> int:
    """Go's ``int(when.Sub(now).Hours())``: truncated toward zero."""
    return int((when - now).total_seconds() / 3600)


def days_until(when: datetime, now: datetime) -> int:
    """Dapr's ``int(expiry.Sub(now).Hours() / 24)``: truncated toward zero."""
    return int((when - now).total_seconds() / 86400)
