"""Pure configuration: Go durations, the Dapr ``Configuration`` resource, access-control lists."""

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
from pysentry.config.duration import format_duration, parse_duration, parse_duration_or_seconds
from pysentry.config.method import normalize_method
from pysentry.config.validators import SentryValidators, sentry_validators

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
