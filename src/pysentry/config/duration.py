"""Go ``time.ParseDuration`` and ``Duration.String()``, exactly.

``parse_duration("1h30m") == timedelta(hours=1, minutes=30)``;
``format_duration(timedelta(days=1)) == "24h0m0s"``. Grammar: an optional sign, then ``"0"`` or one
or more ``<digits>[.<digits>]<unit>`` with units ``ns``, ``us``, ``µs`` (U+00B5), ``μs`` (U+03BC),
``ms``, ``s``, ``m``, ``h``. There is no ``d``. Errors are :class:`pysentry.errors.InvalidDuration`
carrying Go's own text
(``time: invalid duration "x"``, ``time: missing unit in duration "1"``,
``time: unknown unit "d" in duration "1d"``).

Go durations are int64 nanoseconds; ``timedelta`` has microsecond resolution. The conversion
truncates toward zero, like Go's ``Duration.Microseconds()``: ``"1500ns"`` becomes 1 µs and
``"1ns"`` becomes 0. :func:`parse_duration_ns` gives the exact nanosecond count.
"""

from __future__ import annotations

from datetime import timedelta

from pysentry.errors import InvalidDuration

NANOSECOND = 1
MICROSECOND = 1000 * NANOSECOND
MILLISECOND = 1000 * MICROSECOND
SECOND = 1000 * MILLISECOND
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE

_UNITS: dict[str, int] = {
    "ns": NANOSECOND,
    "us": MICROSECOND,
    "\u00b5s": MICROSECOND,  # U+00B5 micro sign
    "\u03bcs": MICROSECOND,  # U+03BC Greek small letter mu
    "ms": MILLISECOND,
    "s": SECOND,
    "m": MINUTE,
    "h": HOUR,
}
_MAX_INT64 = (1 << 63) - 1
_DIGITS = "0123456789"


def go_quote(value: str) -> str:
    """Quote like Go's ``time.quote``: double quotes, ``\\`` and ``"`` escaped, and every byte of a
    non-ASCII or control character written as ``\\xNN``."""
    out = ['"']
    for ch in value:
        if ch < " " or ord(ch) >= 0x80:
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))
        else:
            if ch in '"\\':
                out.append("\\")
            out.append(ch)
    out.append('"')
    return "".join(out)


def _invalid(orig: str) -> InvalidDuration:
    return InvalidDuration("time: invalid duration " + go_quote(orig))


def _leading_int(s: str, orig: str) -> tuple[int, str]:
    x = 0
    i = 0
    while i < len(s) and s[i] in _DIGITS:
        if x > (1 << 63) // 10:
            raise _invalid(orig)
        x = x * 10 + ord(s[i]) - 48
        if x > 1 << 63:
            raise _invalid(orig)
        i += 1
    return x, s[i:]


def _leading_fraction(s: str) -> tuple[int, float, str]:
    x = 0
    scale = 1.0
    overflow = False
    i = 0
    while i < len(s) and s[i] in _DIGITS:
        if not overflow:
            if x > _MAX_INT64 // 10:
                overflow = True
            else:
                y = x * 10 + ord(s[i]) - 48
                if y > 1 << 63:
                    overflow = True
                else:
                    x = y
                    scale *= 10
        i += 1
    return x, scale, s[i:]


def parse_duration_ns(value: str) -> int:
    """Parse a Go duration string into integer nanoseconds (a port of ``time.ParseDuration``)."""
    orig = value
    s = value
    neg = False
    if s and s[0] in "-+":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if s == "":
        raise _invalid(orig)
    total = 0
    while s:
        if not (s[0] == "." or s[0] in _DIGITS):
            raise _invalid(orig)
        before = len(s)
        v, s = _leading_int(s, orig)
        pre = before != len(s)
        post = False
        f, scale = 0, 1.0
        if s and s[0] == ".":
            s = s[1:]
            before = len(s)
            f, scale, s = _leading_fraction(s)
            post = before != len(s)
        if not pre and not post:
            raise _invalid(orig)  # no digits, e.g. ".s" or "-.s"
        i = 0
        while i < len(s) and not (s[i] == "." or s[i] in _DIGITS):
            i += 1
        if i == 0:
            raise InvalidDuration("time: missing unit in duration " + go_quote(orig))
        unit_name, s = s[:i], s[i:]
        unit = _UNITS.get(unit_name)
        if unit is None:
            raise InvalidDuration(
                f"time: unknown unit {go_quote(unit_name)} in duration {go_quote(orig)}"
            )
        if v > (1 << 63) // unit:
            raise _invalid(orig)
        v *= unit
        if f > 0:
            # Go computes the fraction in float64 and truncates: uint64(float64(f) * (unit/scale)).
            v += int(float(f) * (float(unit) / scale))
            if v > 1 << 63:
                raise _invalid(orig)
        total += v
        if total > 1 << 63:
            raise _invalid(orig)
    if neg:
        return -total
    if total > _MAX_INT64:
        raise _invalid(orig)
    return total


def ns_to_timedelta(ns: int) -> timedelta:
    """Nanoseconds to a ``timedelta``, truncating toward zero to whole microseconds."""
    micros = abs(ns) // 1000
    return timedelta(microseconds=-micros if ns < 0 else micros)


def timedelta_to_ns(td: timedelta) -> int:
    return (td.days * 86_400 + td.seconds) * SECOND + td.microseconds * MICROSECOND


def parse_duration(value: str) -> timedelta:
    """Go ``time.ParseDuration`` returning a ``timedelta`` (see the module doc for rounding)."""
    return ns_to_timedelta(parse_duration_ns(value))


def _fmt_frac(v: int, prec: int) -> tuple[str, int]:
    """Go ``fmtFrac``: the fraction of v/10**prec without trailing zeros, and v/10**prec."""
    v, frac = divmod(v, 10**prec)
    digits = f"{frac:0{prec}d}".rstrip("0") if frac else ""
    return ("." + digits if digits else ""), v


def format_duration_ns(ns: int) -> str:
    """Go ``Duration.String()`` of a nanosecond count: ``"1h30m0s"``, ``"1.5s"``, ``"100ms"``."""
    neg = ns < 0
    u = -ns if neg else ns
    if u < SECOND:
        if u == 0:
            return "0s"
        if u < MICROSECOND:
            prec, unit = 0, "ns"
        elif u < MILLISECOND:
            prec, unit = 3, "\u00b5s"
        else:
            prec, unit = 6, "ms"
        frac, whole = _fmt_frac(u, prec)
        text = f"{whole}{frac}{unit}"
    else:
        frac, secs = _fmt_frac(u, 9)
        text = f"{secs % 60}{frac}s"
        mins = secs // 60
        if mins > 0:
            text = f"{mins % 60}m" + text
            hours = mins // 60
            if hours > 0:
                text = f"{hours}h" + text
    return "-" + text if neg else text


def format_duration(td: timedelta) -> str:
    """Go ``Duration.String()``: ``"24h0m0s"``, ``"1h30m0s"``, ``"1.5s"``, ``"0s"``, ``"1µs"``."""
    return format_duration_ns(timedelta_to_ns(td))


def parse_duration_or_seconds(value: str) -> timedelta:
    """Decode a JWKS option duration (Sentry's ``toTimeDurationHookFunc``).

    ``""`` is zero; a Go duration is parsed as such; otherwise the value must be an integer number
    of seconds (``strconv.ParseInt``). When both fail, both errors are joined with a newline.
    """
    if value == "":
        return timedelta(0)
    try:
        return parse_duration(value)
    except InvalidDuration as err:
        body = value[1:] if value[:1] in ("+", "-") else value
        if body == "" or not all(c in _DIGITS for c in body):
            raise InvalidDuration(
                f"{err}\nstrconv.ParseInt: parsing {go_quote(value)}: invalid syntax"
            ) from None
        seconds = int(value)
        if not -(1 << 63) <= seconds <= _MAX_INT64:
            raise InvalidDuration(
                f"{err}\nstrconv.ParseInt: parsing {go_quote(value)}: value out of range"
            ) from None
        if not -(1 << 63) <= seconds * SECOND <= _MAX_INT64:
            # Go would silently wrap around here; refusing is kinder.
            raise InvalidDuration(
                f"invalid duration {value!r}: {seconds} seconds does not fit in a Go duration"
            ) from None
        return timedelta(seconds=seconds)
