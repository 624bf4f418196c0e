"""Invocation values shared by the HTTP API, the internal gRPC edge and the app channel.

These are plain dataclasses: protobuf types never leave :mod:`.messages`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from pysentry.errors import PysentryError

#: Ordered, multi-valued headers as (lower-case name, value) pairs.
Headers = tuple[tuple[str, str], ...]

#: HTTP verbs known to ``dapr.proto.common.v1.HTTPExtension.Verb`` (NONE=0 excluded).
VERBS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")

#: Hop-by-hop and transport headers that never cross a hop (Dapr's http_channel list + ours).
#: ``content-length`` is not one of them: Dapr forwards it in the invocation metadata both ways,
#: and a Go callee takes the app request's length only from it (``http_channel.go``).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "http2-settings",
        "te",
        "trailer",
        "proxy-authorization",
        "proxy-authenticate",
        "expect",
        "host",
    }
)

CALLER_APP_ID = "dapr-caller-app-id"
CALLER_NAMESPACE = "dapr-caller-namespace"
CALLEE_APP_ID = "dapr-callee-app-id"
DESTINATION_APP_ID = "destination-app-id"
IDENTITY_HEADERS = frozenset({CALLER_APP_ID, CALLER_NAMESPACE, CALLEE_APP_ID})


class InvocationError(PysentryError):
    """An invocation that failed before or outside the app: maps to ``ERR_DIRECT_INVOKE``.

    ``status`` is the HTTP status the caller sidecar answers with (500, or 403 for an ACL denial).
    """

    def __init__(self, message: str, *, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class InvokeRequest:
    """One call to an app method, as the callee's app will see it."""

    method: str
    verb: str = "GET"
    query: str = ""
    content_type: str = ""
    headers: Headers = ()
    body: bytes = b""

    def __post_init__(self) -> None:
        if self.verb not in VERBS:
            raise ValueError(f"invalid HTTP verb: {self.verb!r}")


@dataclass(frozen=True, slots=True)
class InvokeResponse:
    """The app's answer: status, headers and body unchanged."""

    status: int
    headers: Headers = ()
    content_type: str = ""
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Target:
    """An invocation target: ``<app>`` (the caller's namespace) or ``<app>.<namespace>``."""

    app_id: str
    namespace: str = field(default="default")

    @classmethod
    def parse(cls, value: str, *, default_namespace: str) -> Target:
        parts = value.split(".")
        if len(parts) == 1 and parts[0]:
            return cls(parts[0], default_namespace)
        if len(parts) == 2 and parts[0] and parts[1]:
            return cls(parts[0], parts[1])
        raise InvocationError(f"invalid app id: {value!r}", status=500)


_NEVER_FORWARDED = HOP_BY_HOP | {DESTINATION_APP_ID}
_NEVER_STAMPED = _NEVER_FORWARDED | IDENTITY_HEADERS


def only_forwardable(headers: Iterable[tuple[str, str]]) -> Headers:
    """Drop hop-by-hop headers, ``*-bin`` metadata and ``destination-app-id``; lower-case names."""
    return tuple(_forwardable(headers, _NEVER_FORWARDED))


def _forwardable(headers: Iterable[tuple[str, str]], drop: frozenset[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name, value in headers:
        key = name.lower()
        if key in drop or key.endswith("-bin") or key.startswith((":", "grpc-")):
            continue
        out.append((key, value))
    return out


def forward_stamped(
    headers: Iterable[tuple[str, str]], caller_app: str, caller_ns: str, callee_app: str
) -> Headers:
    """``replace_identity(only_forwardable(headers), ...)`` in one pass."""
    out = _forwardable(headers, _NEVER_STAMPED)
    out += ((CALLER_APP_ID, caller_app), (CALLER_NAMESPACE, caller_ns), (CALLEE_APP_ID, callee_app))
    return tuple(out)


def replace_identity(headers: Headers, caller_app: str, caller_ns: str, callee_app: str) -> Headers:
    """Strip any caller-supplied identity headers and stamp the real ones."""
    kept = tuple((k, v) for k, v in headers if k not in IDENTITY_HEADERS)
    return (
        *kept,
        (CALLER_APP_ID, caller_app),
        (CALLER_NAMESPACE, caller_ns),
        (CALLEE_APP_ID, callee_app),
    )


class Invoker(Protocol):
    """Sends an invocation to an app-id and returns the app's response (direct messaging)."""

    async def invoke(self, target: Target, request: InvokeRequest) -> InvokeResponse: ...


class AppChannel(Protocol):
    """Calls the local app."""

    async def call(self, request: InvokeRequest) -> InvokeResponse: ...
