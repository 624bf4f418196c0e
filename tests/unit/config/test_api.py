"""Pin the public names of ``pysentry.config`` (other packages code against them)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pysentry.config as config

EXPECTED = {
    "AccessControlList",
    "AccessControlSpec",
    "AppOperation",
    "AppPolicySpec",
    "Configuration",
    "ConfigurationSpec",
    "Decision",
    "MTLSSpec",
    "NameResolutionSpec",
    "SentryValidators",
    "ValidatorSpec",
    "format_duration",
    "load_configuration",
    "normalize_method",
    "parse_configuration",
    "parse_duration",
    "parse_duration_or_seconds",
    "sentry_validators",
}


def test_public_names() -> None:
    assert set(config.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(config, name) is not None


def test_config_is_pure() -> None:
    """No network, TLS or asyncio in the config package."""
    for module in (
        "acl",
        "configuration",
        "duration",
        "envexpand",
        "godecode",
        "trie",
        "validators",
    ):
        mod = importlib.import_module(f"pysentry.config.{module}")
        source = Path(mod.__file__ or "").read_text(encoding="utf-8")
        for banned in ("import asyncio", "import socket", "import ssl", "pysentry.proto"):
            assert banned not in source, f"{module} uses {banned}"
