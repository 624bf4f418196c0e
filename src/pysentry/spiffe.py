"""SPIFFE trust domains and IDs with go-spiffe's strict character rules.

``TrustDomain.parse("cluster.local")``, ``SpiffeId.parse("spiffe://public/ns/default/myapp")``,
``SpiffeId.from_segments(td, "ns", ns, app)`` and ``SpiffeId.for_app(td, ns, app)``.
Errors are :class:`pysentry.errors.InvalidSpiffeId` and say which character or segment is wrong.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from pysentry.errors import InvalidSpiffeId

SCHEME_PREFIX = "spiffe://"
_TD_CHARS = frozenset(string.ascii_lowercase + string.digits + ".-_")
_PATH_CHARS = frozenset(string.ascii_letters + string.digits + ".-_")


def _check_trust_domain(name: str) -> None:
    if not name:
        raise InvalidSpiffeId("invalid trust domain: trust domain is missing")
    for i, ch in enumerate(name):
        if ch not in _TD_CHARS:
            raise InvalidSpiffeId(
                f"invalid trust domain {name!r}: character {ch!r} at position {i} is not allowed; "
                "trust domain characters are limited to lowercase letters, numbers, dots, "
                "dashes, and underscores"
            )


def _check_segment(segment: str, whole: str) -> None:
    if segment == "":
        raise InvalidSpiffeId(
            f"invalid SPIFFE ID path {whole!r}: path cannot contain empty segments"
        )
    if segment in (".", ".."):
        raise InvalidSpiffeId(
            f"invalid SPIFFE ID path {whole!r}: path cannot contain dot segments ({segment!r})"
        )
    for ch in segment:
        if ch not in _PATH_CHARS:
            raise InvalidSpiffeId(
                f"invalid SPIFFE ID path {whole!r}: character {ch!r} in segment {segment!r} is "
                "not allowed; path segment characters are limited to letters, numbers, dots, "
                "dashes, and underscores"
            )


@dataclass(frozen=True, slots=True)
class TrustDomain:
    """A SPIFFE trust domain such as ``public`` or ``cluster.local``."""

    name: str

    def __post_init__(self) -> None:
        _check_trust_domain(self.name)

    @classmethod
    def parse(cls, value: str) -> TrustDomain:
        """Parse ``td`` or ``spiffe://td`` (as go-spiffe's ``TrustDomainFromString``)."""
        if value.startswith(SCHEME_PREFIX) or "://" in value:
            return SpiffeId.parse(value).trust_domain
        return cls(value)

    def id_string(self) -> str:
        return SCHEME_PREFIX + self.name

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class SpiffeId:
    """A SPIFFE ID: a trust domain and a path ("" or "/seg/seg...")."""

    trust_domain: TrustDomain
    path: str = ""

    def __post_init__(self) -> None:
        if self.path:
            if not self.path.startswith("/"):
                raise InvalidSpiffeId(
                    f"invalid SPIFFE ID path {self.path!r}: path must have a leading slash"
                )
            if self.path.endswith("/"):
                raise InvalidSpiffeId(
                    f"invalid SPIFFE ID path {self.path!r}: path cannot have a trailing slash"
                )
            for segment in self.path[1:].split("/"):
                _check_segment(segment, self.path)

    @classmethod
    def parse(cls, value: str) -> SpiffeId:
        if not value:
            raise InvalidSpiffeId("invalid SPIFFE ID: cannot be empty")
        if not value.startswith(SCHEME_PREFIX):
            raise InvalidSpiffeId(
                f"invalid SPIFFE ID {value!r}: scheme is missing or invalid; "
                "it must start with 'spiffe://'"
            )
        rest = value[len(SCHEME_PREFIX) :]
        slash = rest.find("/")
        td_name, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
        if not td_name:
            raise InvalidSpiffeId(f"invalid SPIFFE ID {value!r}: trust domain is missing")
        return cls(TrustDomain(td_name), path)

    @classmethod
    def from_segments(cls, trust_domain: TrustDomain, *segments: str) -> SpiffeId:
        """Join path segments, each of which must be valid on its own."""
        for segment in segments:
            if "/" in segment:
                raise InvalidSpiffeId(
                    f"invalid SPIFFE ID path segment {segment!r}: segments cannot contain '/'"
                )
        path = "".join("/" + s for s in segments)
        if not segments:
            path = ""
        return cls(trust_domain, path)

    @classmethod
    def for_app(cls, trust_domain: TrustDomain | str, namespace: str, app_id: str) -> SpiffeId:
        """``spiffe://<td>/ns/<namespace>/<app-id>``, Dapr's workload identity."""
        td = trust_domain if isinstance(trust_domain, TrustDomain) else TrustDomain(trust_domain)
        return cls.from_segments(td, "ns", namespace, app_id)

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.path[1:].split("/")) if self.path else ()

    @property
    def namespace(self) -> str | None:
        """The ``<ns>`` of a Dapr ``/ns/<ns>/<app>`` ID, else None."""
        parts = self.segments
        return parts[1] if len(parts) >= 3 and parts[0] == "ns" else None

    @property
    def app_id(self) -> str | None:
        """The ``<app>`` of a Dapr ``/ns/<ns>/<app>`` ID, else None."""
        parts = self.segments
        return parts[2] if len(parts) >= 3 and parts[0] == "ns" else None

    def __str__(self) -> str:
        return SCHEME_PREFIX + self.trust_domain.name + self.path


def dapr_path(namespace: str, app_id: str) -> str:
    """The path ``/ns/<namespace>/<app-id>`` that sidecars authorize peers by."""
    return f"/ns/{namespace}/{app_id}"
