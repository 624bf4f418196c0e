"""The Dapr building blocks pysentry does not provide, recognised by their API paths, so that a
call to one gets a clear answer (501, or gRPC UNIMPLEMENTED) instead of "route not found"."""

from __future__ import annotations

#: Dapr's other HTTP building blocks, by path prefix (after the API version).
_BLOCKS = (
    ("state", "state management"),
    ("publish", "publish and subscribe"),
    ("subscribe", "publish and subscribe"),
    ("bindings", "bindings"),
    ("secrets", "secrets"),
    ("actors", "actors"),
    ("configuration", "configuration"),
    ("lock", "distributed lock"),
    ("unlock", "distributed lock"),
    ("crypto", "cryptography"),
    ("workflows", "workflows"),
    ("jobs", "jobs"),
    ("conversation", "conversation"),
    ("shutdown", "shutdown"),
    ("outbox", "outbox"),
)


def building_block(path: str) -> str | None:
    """The Dapr building block a path belongs to (``/v1.0/state/x`` -> "state management")."""
    version, _, rest = path.lstrip("/").partition("/")
    if not version.startswith("v1.0"):
        return None
    head = rest.split("/", 1)[0]
    return next((name for prefix, name in _BLOCKS if head == prefix), None)
