"""The ``kubernetes`` resolver: Kubernetes' service name, or a Go ``text/template``."""

from __future__ import annotations

import logging

import pytest

from pysentry.errors import ConfigError
from pysentry.nameresolution import KubernetesResolver, SqliteResolver, from_spec


def test_default_is_the_service_dns_name() -> None:
    r = KubernetesResolver({}, port=50002)
    assert r.resolve("appB", "prod") == "appB-dapr.prod.svc.cluster.local:50002"
    r = KubernetesResolver({"clusterDomain": "corp.example"}, port=1)
    assert r.resolve("a", "ns") == "a-dapr.ns.svc.corp.example:1"


def test_templates_as_in_dapr_docs() -> None:
    r = KubernetesResolver(
        {"template": "{{.ID}}-dapr.{{.Namespace}}.svc.cluster.local:{{.Port}}"}, port=50002
    )
    assert r.resolve("appB", "default") == "appB-dapr.default.svc.cluster.local:50002"
    fixed = KubernetesResolver({"template": "127.0.0.1:40123"}, port=50002)
    assert fixed.resolve("anything", "default") == "127.0.0.1:40123"
    data = KubernetesResolver({"template": "{{ .Data.host }}:{{.Port}}"}, port=7)
    assert data.resolve_request("a", "ns", {"host": "10.0.0.1"}) == "10.0.0.1:7"
    # Registration does nothing and needs no file.
    fixed.register(None)  # type: ignore[arg-type]
    fixed.unregister()


def test_unsupported_template_actions_are_refused() -> None:
    with pytest.raises(ConfigError, match="unsupported template action"):
        KubernetesResolver({"template": "{{range .X}}{{end}}"}, port=1)
    with pytest.raises(ConfigError, match="unclosed action"):
        KubernetesResolver({"template": "{{.ID"}, port=1)


def test_factory_picks_component_and_warns_on_unknown(
    tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    assert isinstance(from_spec("Kubernetes", {}, internal_port=1), KubernetesResolver)
    env = {"HOME": str(tmp_path)}
    with caplog.at_level(logging.WARNING):
        fallback = from_spec("mdns", {}, internal_port=1, env=env)
    try:
        assert isinstance(fallback, SqliteResolver)
        assert "'mdns' is not supported by pysentry" in caplog.text
        assert "mDNS is not implemented" in caplog.text
    finally:
        fallback.close()
