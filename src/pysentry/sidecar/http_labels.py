"""The ``method`` and ``path`` labels of Dapr's HTTP server metrics (``http_monitoring*.go``)."""

from __future__ import annotations

#: ``diagUtils.ValidHTTPVerbs``: any other method is recorded as ``UNKNOWN``.
HTTP_VERBS = frozenset(
    {"GET", "PUT", "POST", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT", "TRACE"}
)


def http_path_label(path: str) -> str:
    """Dapr's ``convertPathToMetricLabel`` (``increasedCardinality``, the v1.16 default): the path,
    with the variable part of state, secrets, actors and workflows routes folded."""
    if not path:
        return path
    parts = (path[1:] if path[0] == "/" else path).split("/", 5)
    if len(parts) < 3:
        return path
    if parts[0] == "actors":
        parts[2] = "{id}"
        return "/".join(parts)
    api = parts[1]
    if api in ("state", "secrets"):
        return "/" + "/".join(parts[:3])
    if api == "actors":
        if len(parts) < 5:
            return path
        parts[3] = "{id}"
        return "/" + "/".join(parts[:5])
    if api == "workflows":
        if len(parts) < 4:
            return path
        if len(parts) == 4:
            parts[3] = "{instanceId}"
            return "/" + "/".join(parts)
        if len(parts) == 5 and parts[4].startswith("start"):
            return "/" + "/".join(parts[:4]) + "/start"
        parts[3] = "{instanceId}"
        if len(parts) == 6 and parts[4] == "raiseEvent" and parts[5]:
            parts[5] = "{eventName}"
            return "/" + "/".join(parts)
        return "/" + "/".join(parts[:5])
    return path
