"""The ``dapr.io/v1alpha1`` ``Configuration`` resource: pydantic models and YAML loading.

Only the sections pysentry acts on are modelled (``spec.mtls``, ``spec.accessControl``,
``spec.nameResolution``). Every other key (``tracing``, ``metric``, ``features``...) is ignored, as
Dapr's ``dapr init`` config has them. A wrong *type* in a modelled field is an error.
``load_configuration(path)`` reads the file, expands ``$VAR``/``${VAR}`` like Go's ``os.ExpandEnv``
(unset variables become ""), safe-loads the YAML (an empty file gives all defaults) and raises
:class:`pysentry.errors.ConfigError` naming the file, the field path and the problem.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, ValidationError
from pydantic_core import PydanticCustomError

from pysentry.config.duration import parse_duration
from pysentry.config.envexpand import expand_env
from pysentry.config.godecode import (
    YamlV3Loader,
    go_bool,
    go_string,
    optional_str,
    scalar_text,
    string_map,
)
from pysentry.errors import ConfigError, InvalidDuration

DEFAULT_WORKLOAD_CERT_TTL = dt.timedelta(hours=24)
DEFAULT_ALLOWED_CLOCK_SKEW = dt.timedelta(minutes=15)


GoStr = Annotated[str, BeforeValidator(go_string)]


def _duration(
    label: str, default: dt.timedelta, example: str, *, positive: bool
) -> BeforeValidator:
    def parse(value: object) -> object:
        result = _parse(value)
        # Go accepts any sign; an expired-on-issue certificate is never what the user meant.
        if (positive and result <= dt.timedelta(0)) or result < dt.timedelta(0):
            raise PydanticCustomError(
                "duration_sign",
                "{label} must be {what}, got {got}: use a Go duration such as {example}",
                {
                    "label": label,
                    "what": "at least 1µs" if positive else "zero or positive",
                    "got": repr(value),
                    "example": repr(example),
                },
            )
        return result

    def _parse(value: object) -> dt.timedelta:
        if value is None or value == "":
            return default
        if isinstance(value, dt.timedelta):
            return value
        text = scalar_text(value) if isinstance(value, int | float) else value
        if not isinstance(text, str):
            raise PydanticCustomError(
                "duration_type",
                "expected a Go duration string such as '24h', got a {got}",
                {"got": type(value).__name__},
            )
        try:
            return parse_duration(text)
        except InvalidDuration as err:
            raise PydanticCustomError(
                "duration",
                "error parsing {label} duration: {err}",
                {"label": label, "err": str(err)},
            ) from None

    return BeforeValidator(parse)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class ValidatorSpec(_Model):
    """One ``spec.mtls.tokenValidators`` entry; ``options`` values become strings."""

    name: GoStr = ""
    options: Annotated[dict[str, str], BeforeValidator(string_map)] = Field(default_factory=dict)


class MTLSSpec(_Model):
    """``spec.mtls``.

    ``enabled`` defaults to False here, as in a standalone file. In Kubernetes the CR's
    ``GetEnabled()`` treats an *unset* value as True; callers that need that rule check
    ``"enabled" in spec.mtls.model_fields_set``. ``control_plane_trust_domain`` is the raw value
    (None when unset or ""): Sentry falls back to ``cluster.local`` and ``--trust-domain`` wins.
    """

    enabled: Annotated[StrictBool, BeforeValidator(go_bool)] = False
    workload_cert_ttl: Annotated[
        dt.timedelta, _duration("WorkloadCertTTL", DEFAULT_WORKLOAD_CERT_TTL, "24h", positive=True)
    ] = Field(default=DEFAULT_WORKLOAD_CERT_TTL, alias="workloadCertTTL")
    allowed_clock_skew: Annotated[
        dt.timedelta,
        _duration("AllowedClockSkew", DEFAULT_ALLOWED_CLOCK_SKEW, "15m", positive=False),
    ] = Field(default=DEFAULT_ALLOWED_CLOCK_SKEW, alias="allowedClockSkew")
    control_plane_trust_domain: Annotated[str | None, BeforeValidator(optional_str)] = Field(
        default=None, alias="controlPlaneTrustDomain"
    )
    sentry_address: Annotated[str | None, BeforeValidator(optional_str)] = Field(
        default=None, alias="sentryAddress"
    )
    token_validators: tuple[ValidatorSpec, ...] = Field(default=(), alias="tokenValidators")


class AppOperation(_Model):
    """``policies[].operations[]``: ``name`` (``/op``, ``/op/*``, ``/op/**``), verbs, action."""

    name: GoStr = ""
    http_verb: tuple[GoStr, ...] = Field(default=(), alias="httpVerb")
    action: GoStr = ""


class AppPolicySpec(_Model):
    """``spec.accessControl.policies[]``."""

    app_id: GoStr = Field(default="", alias="appId")
    default_action: GoStr = Field(default="", alias="defaultAction")
    trust_domain: GoStr = Field(default="", alias="trustDomain")
    namespace: GoStr = ""
    operations: tuple[AppOperation, ...] = ()


class AccessControlSpec(_Model):
    """``spec.accessControl``. ``policies`` is None when absent and ``()`` for an explicit empty
    list: the two differ for the global default action (see ``pysentry.config.acl``)."""

    default_action: GoStr = Field(default="", alias="defaultAction")
    trust_domain: GoStr = Field(default="", alias="trustDomain")
    policies: tuple[AppPolicySpec, ...] | None = None


class NameResolutionSpec(_Model):
    """``spec.nameResolution``: ``component`` (``sqlite``, ``mdns``...), ``version``, free-form
    ``configuration``."""

    component: GoStr = ""
    version: GoStr = ""
    configuration: Annotated[dict[str, Any], BeforeValidator(lambda v: {} if v is None else v)] = (
        Field(default_factory=dict)
    )


class ConfigurationSpec(_Model):
    mtls: Annotated[MTLSSpec, BeforeValidator(lambda v: {} if v is None else v)] = MTLSSpec()
    access_control: AccessControlSpec | None = Field(default=None, alias="accessControl")
    name_resolution: NameResolutionSpec | None = Field(default=None, alias="nameResolution")


class Metadata(_Model):
    name: GoStr = ""
    namespace: GoStr = ""


class Configuration(_Model):
    """A whole ``kind: Configuration`` document."""

    api_version: GoStr = Field(default="dapr.io/v1alpha1", alias="apiVersion")
    kind: GoStr = "Configuration"
    metadata: Annotated[Metadata, BeforeValidator(lambda v: {} if v is None else v)] = Metadata()
    spec: Annotated[ConfigurationSpec, BeforeValidator(lambda v: {} if v is None else v)] = (
        ConfigurationSpec()
    )


# --- loading ---------------------------------------------------------------------------------


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("function-before[parse()]", "function-after"):
            continue
        else:
            path += ("." if path else "") + str(part)
    return path or "<document>"


_TYPE_MESSAGES = {
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "tuple_type": "expected a list",
    "list_type": "expected a list",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "dict_type": "expected a mapping",
}


def _describe(error: Mapping[str, Any]) -> str:
    kind = str(error["type"])
    if kind in _TYPE_MESSAGES:
        got = error.get("input")
        shown = repr(got) if isinstance(got, str | int | float | bool) else type(got).__name__
        return f"{_TYPE_MESSAGES[kind]}, got {shown}"
    return str(error["msg"])


def parse_configuration(text: str, source: str) -> Configuration:
    """Parse YAML text (already env-expanded) into a :class:`Configuration`.

    ``source`` names the file in messages. An empty document gives all defaults.
    """
    try:
        data = yaml.load(text, Loader=YamlV3Loader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = err.problem or err.context or "invalid YAML"
        raise ConfigError(f"invalid configuration {where}: {problem}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid configuration {source}: {err}") from err
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"invalid configuration {source}: expected a mapping with apiVersion, kind and spec "
            f"at the top level, got a {type(data).__name__}"
        )
    kind = data.get("kind")
    if isinstance(kind, str) and kind and kind.lower() != "configuration":
        raise ConfigError(
            f"invalid configuration {source}: kind is {kind!r}, expected 'Configuration' "
            "(is this a component file?)"
        )
    try:
        return Configuration.model_validate(data)
    except ValidationError as err:
        problems = [f"{_field_path(e['loc'])}: {_describe(e)}" for e in err.errors()]
        raise ConfigError(f"invalid configuration {source}: " + "; ".join(problems)) from None


def load_configuration(path: Path, *, env: Mapping[str, str] | None = None) -> Configuration:
    """Read, env-expand and parse a Configuration file (Dapr's ``LoadStandaloneConfiguration``)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"configuration file {str(path)!r} not found: check the --config path, or create the "
            "file (an empty file is a valid configuration)"
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            f"configuration file {str(path)!r} is a directory: pass the path of a YAML file"
        ) from None
    except OSError as err:
        raise ConfigError(
            f"configuration file {str(path)!r} cannot be read: {err.strerror or err}; "
            "check its permissions"
        ) from err
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"configuration file {str(path)!r} is not UTF-8 text (byte {err.start}): "
            "save it as UTF-8 YAML"
        ) from None
    expanded = expand_env(text, os.environ if env is None else env)
    return parse_configuration(expanded, str(path))
