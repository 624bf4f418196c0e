"""The token validators Sentry runs, from the Configuration and the mode (spec §4.2 step 4).

The main process builds them to announce them (Dapr's ``Adding validator`` lines) and to list
their ``/healthz`` targets; with ``--workers`` above 1 every worker builds its own set quietly,
since each one validates the requests it signs.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pysentry.config import Configuration, sentry_validators
from pysentry.sentry.ca import CaSettings
from pysentry.sentry.options import SentryOptions
from pysentry.sentry.validators import InsecureValidator, TokenValidator, Validator

if TYPE_CHECKING:
    from pysentry.sentry.k8s_mode import KubernetesMode

log = logging.getLogger("pysentry.sentry")


def build_validators(
    config: Configuration,
    options: SentryOptions,
    kube: KubernetesMode | None = None,
    settings: CaSettings | None = None,
    *,
    announce: bool = True,
) -> tuple[dict[TokenValidator, Validator], TokenValidator]:
    say = log.info if announce else log.debug
    choice = sentry_validators(config, options.mode)
    validators: dict[TokenValidator, Validator] = {}
    for name in choice.enabled:
        if name == "INSECURE":
            say("Adding validator 'insecure'")
            validators[TokenValidator.INSECURE] = InsecureValidator()
        elif name == "KUBERNETES" and kube is not None and settings is not None:
            say("Adding validator 'kubernetes' with Sentry ID: %s", settings.sentry_id)
            validators[TokenValidator.KUBERNETES] = kube.validator(settings)
        elif name == "JWKS":
            say("Adding validator 'jwks' with Sentry ID: %s", options.sentry_id)
            from pysentry.sentry.jwks import JwksOptions, JwksValidator  # aiohttp, jwt: on use

            jwks_options = JwksOptions.from_map(choice.jwks_options or {})
            validators[TokenValidator.JWKS] = JwksValidator(jwks_options, options.sentry_id)
    default = TokenValidator[choice.default]
    if default != TokenValidator.UNKNOWN:
        say("Using validator '%s'", default.name.lower())
    return validators, default
