"""Kubernetes resource quantities (``4Mi``, ``512k``, ``1e6``), as daprd's ``--max-body-size`` and
``--read-buffer-size`` take them (``k8s.io/apimachinery/pkg/api/resource.ParseQuantity``, then a
whole number of bytes)."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from pysentry.errors import ConfigError

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_QUANTITY = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))([eE][+-]?[0-9]+|[a-zA-Z]*)$")
_MAX_INT64 = 2**63 - 1


def parse_byte_quantity(value: str, *, flag: str) -> int:
    """A quantity as a whole, non-negative number of bytes. Raises :class:`ConfigError` naming
    ``flag`` and the accepted forms."""
    text = value.strip()
    m = _QUANTITY.match(text)
    if m is None:
        raise ConfigError(
            f"invalid value for {flag!r} option: {value!r}: not a quantity; "
            "use a number of bytes or a suffix such as 4Mi, 512Ki or 10M"
        )
    number, suffix = m.groups()
    try:
        amount = Decimal(number)
        if suffix in _BINARY:
            amount *= _BINARY[suffix]
        elif suffix in _DECIMAL:
            amount *= _DECIMAL[suffix]
        elif suffix[:1] in ("e", "E"):
            amount = amount.scaleb(int(suffix[1:]))
        else:
            raise ConfigError(
                f"invalid value for {flag!r} option: {value!r}: unknown suffix {suffix!r}; "
                "use Ki, Mi, Gi, k, M or G"
            )
    except InvalidOperation as err:
        raise ConfigError(f"invalid value for {flag!r} option: {value!r}") from err
    if amount < 0:
        raise ConfigError(f"invalid value for {flag!r} option: {value!r}: must not be negative")
    if amount != amount.to_integral_value() or amount > _MAX_INT64:
        raise ConfigError(
            f"invalid value for {flag!r} option: cannot get bytes from resource quantity "
            f"value {value!r}"
        )
    return int(amount)
