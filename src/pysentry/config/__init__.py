"""Pure configuration: Go durations, the Dapr ``Configuration`` resource, access-control lists.

The names below are loaded on first use (PEP 562): importing one light submodule, such as
:mod:`pysentry.config.duration` on daprd's start-up path, does not import pydantic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pysentry.config.acl import AccessControlList, Decision
    from pysentry.config.configuration import (
        AccessControlSpec,
        AppOperation,
        AppPolicySpec,
        Configuration,
        ConfigurationSpec,
        MTLSSpec,
        NameResolutionSpec,
        ValidatorSpec,
        load_configuration,
        parse_configuration,
    )
    from pysentry.config.duration import (
        format_duration,
        parse_duration,
        parse_duration_or_seconds,
    )
    from pysentry.config.method import normalize_method
    from pysentry.config.validators import SentryValidators, sentry_validators

_WHERE = {
    "AccessControlList": "acl",
    "Decision": "acl",
    "AccessControlSpec": "configuration",
    "AppOperation": "configuration",
    "AppPolicySpec": "configuration",
    "Configuration": "configuration",
    "ConfigurationSpec": "configuration",
    "MTLSSpec": "configuration",
    "NameResolutionSpec": "configuration",
    "ValidatorSpec": "configuration",
    "load_configuration": "configuration",
    "parse_configuration": "configuration",
    "format_duration": "duration",
    "parse_duration": "duration",
    "parse_duration_or_seconds": "duration",
    "normalize_method": "method",
    "SentryValidators": "validators",
    "sentry_validators": "validators",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
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
]
