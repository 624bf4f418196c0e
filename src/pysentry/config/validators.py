"""Which token validators Sentry runs, from ``spec.mtls.tokenValidators`` (spec §4.2 step 4).

A port of the validator part of ``pkg/sentry/config/config.go`` ``parseConfiguration``, with its
exact error messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pysentry.config.configuration import Configuration
from pysentry.errors import ConfigError

VALIDATOR_NAMES = ("UNKNOWN", "INSECURE", "KUBERNETES", "JWKS")  # the proto enum, in order


@dataclass(frozen=True, slots=True)
class SentryValidators:
    """Which validators Sentry runs: ``default`` is used when a request names none (``UNKNOWN``
    means every request must name one); ``jwks_options`` is set when JWKS is enabled."""

    default: str
    enabled: tuple[str, ...]
    jwks_options: Mapping[str, str] | None = None


def sentry_validators(cfg: Configuration, mode: str) -> SentryValidators:
    """Apply §4.2 step 4: Kubernetes always runs KUBERNETES (the default); standalone runs INSECURE
    only when no ``tokenValidators`` are configured. Only ``jwks`` may be configured."""
    kubernetes = mode == "kubernetes"
    enabled: list[str] = []
    default = "UNKNOWN"
    jwks: Mapping[str, str] | None = None
    if kubernetes:
        default = "KUBERNETES"
        enabled.append("KUBERNETES")
    validators = cfg.spec.mtls.token_validators
    if validators:
        for spec in validators:
            name = spec.name.upper()
            if name in ("KUBERNETES", "INSECURE"):
                raise ConfigError(
                    "invalid token validator: the built-in 'kubernetes' and 'insecure' validators "
                    "cannot be configured manually"
                )
            if name != "JWKS":
                raise ConfigError(
                    f"invalid token validator name: '{spec.name}'; supported values: 'jwks'"
                )
            jwks = dict(spec.options)  # a later entry replaces an earlier one, as in Dapr's map
            if "JWKS" not in enabled:
                enabled.append("JWKS")
    elif not kubernetes:
        default = "INSECURE"
        enabled.append("INSECURE")
    return SentryValidators(default=default, enabled=tuple(enabled), jwks_options=jwks)
