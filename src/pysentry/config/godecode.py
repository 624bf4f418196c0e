"""How Go (yaml.v3, spf13/cast) decodes YAML scalars, for the Configuration models.

``YamlV3Loader`` is PyYAML's safe loader with yaml.v3's booleans (only true/false; a plain
``yes``, ``no``, ``on`` or ``off`` stays text unless the field is a bool). ``go_string`` turns any
scalar into the text yaml.v3 would store in a Go string; ``string_map`` is cast.ToStringMapString.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from decimal import Decimal

import yaml
from pydantic_core import PydanticCustomError


class Yaml11Word(str):
    """A plain ``yes``/``no``/``on``/``off``. yaml.v3 keeps it as text in a string field (no
    "Norway problem") and reads it as a boolean in a bool field; PyYAML always makes it a bool."""

    __slots__ = ()


class YamlV3Loader(yaml.SafeLoader):
    """PyYAML's safe loader with yaml.v3's booleans: only true/false resolve to bool."""


YamlV3Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
YamlV3Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
YamlV3Loader.add_implicit_resolver(
    "!yaml11word", re.compile(r"^(?:yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF)$"), list("yYnNoO")
)
YamlV3Loader.add_constructor(
    "!yaml11word",
    lambda loader, node: Yaml11Word(loader.construct_scalar(node)),  # type: ignore[arg-type]
)


def go_bool(value: object) -> object:
    if isinstance(value, Yaml11Word):
        return value.lower() in ("yes", "on")
    return value


def go_string(value: object) -> object:
    """yaml.v3 decodes any scalar into a Go string (``appId: 123`` is "123"); null is ""."""
    if isinstance(value, Yaml11Word):
        return str(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | dt.date):
        return scalar_text(value)
    return value


def scalar_text(value: object) -> str:
    """``cast.ToString`` for scalars: ints in decimal, floats without exponent (Go ``'f'``)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return format(Decimal(repr(value)), "f")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def string_map(value: object) -> object:
    """``cast.ToStringMapString``: a mapping whose scalar values become strings."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PydanticCustomError(
            "options_type",
            "expected a mapping of option names to values, got {got}",
            {"got": type(value).__name__},
        )
    out: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, Mapping | list | tuple):
            raise PydanticCustomError(
                "options_value",
                "option '{key}' must be a string, number or boolean, got a {got}",
                {"key": str(key), "got": type(item).__name__},
            )
        out[str(key)] = scalar_text(item)
    return out


def optional_str(value: object) -> object:
    value = go_string(value)
    return None if value == "" else value
