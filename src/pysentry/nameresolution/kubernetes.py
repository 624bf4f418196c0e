"""Dapr's ``kubernetes`` name resolver (components-contrib ``nameresolution/kubernetes``).

No API server: an address is a string. Without a template it is
``<app-id>-dapr.<namespace>.svc.<clusterDomain>:<port>`` (``clusterDomain`` defaults to
``cluster.local``); with ``template`` it is Go ``text/template`` over the request's ``ID``,
``Namespace``, ``Port`` and ``Data``, e.g. ``{{.ID}}-dapr.{{.Namespace}}.svc.cluster.local:
{{.Port}}`` or a fixed ``127.0.0.1:50002``. ``Port`` is the caller's own internal gRPC port, as
daprd passes it (``ResolveRequest.Port``). Registration is a no-op: nothing is written.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from datetime import datetime

from pysentry.errors import ConfigError
from pysentry.nameresolution.base import Registration, ResolutionError

DEFAULT_CLUSTER_DOMAIN = "cluster.local"
_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}")
_FIELD = re.compile(r"^\.(ID|Namespace|Port)$")
_DATA = re.compile(r"^\.Data\.([A-Za-z_][A-Za-z0-9_]*)$|^index \.Data \"([^\"]*)\"$")


def _fields_of(template: str) -> list[str]:
    """The actions of ``template``; only field references are supported (others: ConfigError)."""
    actions = _ACTION.findall(template)
    for action in actions:
        if not (_FIELD.match(action) or _DATA.match(action)):
            raise ConfigError(
                "nameResolution.configuration.template: unsupported template action "
                f"{{{{{action}}}}} in {template!r}; use {{{{.ID}}}}, {{{{.Namespace}}}}, "
                "{{.Port}} or {{.Data.<key>}}"
            )
    if template.count("{{") != len(actions):
        raise ConfigError(f"nameResolution.configuration.template: unclosed action in {template!r}")
    return actions


class KubernetesResolver:
    """Addresses from a template (or Kubernetes' service DNS name); nothing to register."""

    def __init__(
        self,
        configuration: Mapping[str, object],
        *,
        port: int,
    ) -> None:
        lowered = {str(k).lower(): v for k, v in configuration.items()}
        self.cluster_domain = str(lowered.get("clusterdomain") or DEFAULT_CLUSTER_DOMAIN)
        self.template = str(lowered.get("template") or "")
        if self.template:
            _fields_of(self.template)
        self.port = port

    def resolve_request(
        self, app_id: str, namespace: str, data: Mapping[str, str] | None = None
    ) -> str:
        if not self.template:
            return f"{app_id}-dapr.{namespace}.svc.{self.cluster_domain}:{self.port}"
        values = {"ID": app_id, "Namespace": namespace, "Port": str(self.port)}
        extra = dict(data or {})

        def substitute(match: re.Match[str]) -> str:
            action = match.group(1)
            if (field := _FIELD.match(action)) is not None:
                return values[field.group(1)]
            key_match = _DATA.match(action)
            assert key_match is not None  # checked in __init__
            return extra.get(key_match.group(1) or key_match.group(2), "<no value>")

        address = _ACTION.sub(substitute, self.template)
        if not address:
            raise ResolutionError(f"template {self.template!r} gave an empty address")
        return address

    def resolve(self, app_id: str, namespace: str) -> str:
        return self.resolve_request(app_id, namespace)

    def register(self, registration: Registration) -> None:
        return None

    def update_identity(self, spiffe_id: str, cert_expiry_at: datetime | None) -> None:
        return None

    def invalidate(self, app_id: str, namespace: str) -> None:
        return None

    def unregister(self) -> None:
        return None

    async def run(self) -> None:
        await asyncio.Event().wait()  # nothing to refresh; runs until cancelled

    def close(self) -> None:
        return None
