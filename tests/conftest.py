"""Shared fixtures: a clean environment for every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# Env vars that pysentry reads. Tests start with none of them set.
_ENV_VARS = (
    "NAMESPACE",
    "DAPR_TRUST_ANCHORS",
    "DAPR_CERT_CHAIN",
    "DAPR_CERT_KEY",
    "DAPR_SENTRY_TOKEN_FILE",
    "SENTRY_LOCAL_IDENTITY",
    "DAPR_CONTROLPLANE_NAMESPACE",
    "DAPR_CONTROLPLANE_TRUST_DOMAIN",
    "DAPR_API_TOKEN",
    "DAPR_HTTP_PORT",
    "DAPR_GRPC_PORT",
    "APP_ID",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in _ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    yield
