"""Dapr's ``age.GetAge`` (``cli:pkg/age``): how ``dapr list`` and ``dapr status`` print ages."""

from __future__ import annotations

from datetime import datetime

CREATED_FORMAT = "%Y-%m-%d %H:%M.%S"  # Go's "2006-01-02 15:04.05", in local time


def age(created: datetime, now: datetime) -> str:
    """``45s``, ``12m``, ``3h``, ``2d`` (each truncated)."""
    seconds = (now - created).total_seconds()
    if seconds <= 60:
        return f"{int(seconds)}s"
    if seconds <= 3600:
        return f"{int(seconds / 60)}m"
    if seconds <= 86400:
        return f"{int(seconds / 3600)}h"
    return f"{int(seconds / 86400)}d"


def created(value: datetime) -> str:
    """Dapr's CREATED column: local time, ``2006-01-02 15:04.05``."""
    return value.astimezone().strftime(CREATED_FORMAT)
