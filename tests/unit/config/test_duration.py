"""Go time.ParseDuration / Duration.String() parity (spec §4.3, §7.6)."""

from __future__ import annotations

import re
from datetime import timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pysentry.config.duration import (
    HOUR,
    MICROSECOND,
    MILLISECOND,
    MINUTE,
    NANOSECOND,
    SECOND,
    format_duration,
    format_duration_ns,
    parse_duration,
    parse_duration_ns,
    parse_duration_or_seconds,
)
from pysentry.errors import InvalidDuration

MAX_INT64 = (1 << 63) - 1

# (input, nanoseconds). Rows taken from Go's time_test.go parseDurationTests and spec §4.3.
VALID = [
    ("0", 0, "bare zero"),
    ("-0", 0, "signed zero"),
    ("+0", 0, "plus zero"),
    ("5s", 5 * SECOND, "seconds"),
    ("30s", 30 * SECOND, "two digits"),
    ("1478s", 1478 * SECOND, "many digits"),
    ("-5s", -5 * SECOND, "minus"),
    ("+5s", 5 * SECOND, "plus"),
    ("-0s", 0, "minus zero seconds"),
    ("+0s", 0, "plus zero seconds"),
    ("5.0s", 5 * SECOND, "decimal zero"),
    ("5.6s", 5 * SECOND + 600 * MILLISECOND, "fraction"),
    ("5.s", 5 * SECOND, "trailing dot"),
    (".5s", 500 * MILLISECOND, "leading dot"),
    ("1.0s", SECOND, "one point zero"),
    ("1.00s", SECOND, "one point zero zero"),
    ("1.004s", SECOND + 4 * MILLISECOND, "milli fraction"),
    ("1.0040s", SECOND + 4 * MILLISECOND, "trailing zero fraction"),
    ("100.00100s", 100 * SECOND + 1 * MILLISECOND, "long fraction"),
    ("10ns", 10 * NANOSECOND, "ns"),
    ("11us", 11 * MICROSECOND, "us"),
    ("12\u00b5s", 12 * MICROSECOND, "micro sign U+00B5"),
    ("12\u03bcs", 12 * MICROSECOND, "greek mu U+03BC"),
    ("13ms", 13 * MILLISECOND, "ms"),
    ("14s", 14 * SECOND, "s"),
    ("15m", 15 * MINUTE, "m"),
    ("16h", 16 * HOUR, "h"),
    ("24h", 24 * HOUR, "default workloadCertTTL"),
    ("3h30m", 3 * HOUR + 30 * MINUTE, "compound"),
    ("1h30m", 90 * MINUTE, "spec example"),
    ("1.5h", 90 * MINUTE, "fractional hours"),
    ("10.5s4m", 4 * MINUTE + 10 * SECOND + 500 * MILLISECOND, "any order"),
    ("-2m3.4s", -(2 * MINUTE + 3 * SECOND + 400 * MILLISECOND), "negative compound"),
    (
        "1h2m3s4ms5us6ns",
        HOUR + 2 * MINUTE + 3 * SECOND + 4 * MILLISECOND + 5 * MICROSECOND + 6,
        "every unit",
    ),
    ("39h9m14.425s", 39 * HOUR + 9 * MINUTE + 14 * SECOND + 425 * MILLISECOND, "go example"),
    ("52763797000ns", 52763797000, "large ns"),
    ("0.3333333333333333333h", 20 * MINUTE, "float rounding in fraction"),
    ("9007199254740993ns", (1 << 53) + 1, "2^53 + 1 exact"),
    ("9223372036854775807ns", MAX_INT64, "largest"),
    ("9223372036854775.807us", MAX_INT64, "largest in us"),
    ("9223372036s854ms775us807ns", MAX_INT64, "largest compound"),
    ("-9223372036854775808ns", -(1 << 63), "smallest"),
    ("-9223372036854775.808us", -(1 << 63), "smallest in us"),
    ("0.100000000000000000000h", 6 * MINUTE, "many fraction digits"),
    ("0.830103483285477580700h", 49 * MINUTE + 48 * SECOND + 372539827, "overflowing fraction"),
]

INVALID = [
    ("", 'time: invalid duration ""', "empty"),
    ("3", 'time: missing unit in duration "3"', "missing unit"),
    ("1", 'time: missing unit in duration "1"', "one"),
    ("00", 'time: missing unit in duration "00"', "double zero"),
    ("-", 'time: invalid duration "-"', "sign only"),
    ("s", 'time: invalid duration "s"', "unit only"),
    (".", 'time: invalid duration "."', "dot only"),
    ("-.", 'time: invalid duration "-."', "sign dot"),
    (".s", 'time: invalid duration ".s"', "dot unit"),
    ("+.s", 'time: invalid duration "+.s"', "sign dot unit"),
    ("1d", 'time: unknown unit "d" in duration "1d"', "no day unit"),
    ("1w", 'time: unknown unit "w" in duration "1w"', "no week unit"),
    ("1H", 'time: unknown unit "H" in duration "1H"', "units are case sensitive"),
    ("1.5hr", 'time: unknown unit "hr" in duration "1.5hr"', "long unit"),
    ("1h 30m", 'time: unknown unit "h " in duration "1h 30m"', "space"),
    (" 1h", 'time: invalid duration " 1h"', "leading space"),
    ("1\u00b5", 'time: unknown unit "\\xc2\\xb5" in duration "1\\xc2\\xb5"', "quote non-ascii"),
    ("3.4.5s", 'time: missing unit in duration "3.4.5s"', "two dots"),
    ("--1s", 'time: invalid duration "--1s"', "double sign"),
    ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"', "overflow"),
    (
        "9223372036854775.808us",
        'time: invalid duration "9223372036854775.808us"',
        "overflow fraction",
    ),
    (
        "9223372036854ms775us808ns",
        'time: invalid duration "9223372036854ms775us808ns"',
        "overflow sum",
    ),
    (
        "-9223372036854775809ns",
        'time: invalid duration "-9223372036854775809ns"',
        "negative overflow",
    ),
    ("3000000h", 'time: invalid duration "3000000h"', "too many hours"),
]

FORMAT = [
    (0, "0s"),
    (1, "1ns"),
    (1100, "1.1\u00b5s"),
    (MICROSECOND, "1\u00b5s"),
    (2200 * MICROSECOND, "2.2ms"),
    (100 * MILLISECOND, "100ms"),
    (3300 * MILLISECOND, "3.3s"),
    (1500 * MILLISECOND, "1.5s"),
    (4 * MINUTE + 5 * SECOND, "4m5s"),
    (4 * MINUTE + 5001 * MILLISECOND, "4m5.001s"),
    (5 * HOUR + 6 * MINUTE + 7001 * MILLISECOND, "5h6m7.001s"),
    (8 * MINUTE + 1, "8m0.000000001s"),
    (90 * MINUTE, "1h30m0s"),
    (24 * HOUR, "24h0m0s"),
    (MAX_INT64, "2562047h47m16.854775807s"),
    (-(1 << 63), "-2562047h47m16.854775808s"),
    (-1, "-1ns"),
]


@pytest.mark.parametrize(("text", "ns"), [r[:2] for r in VALID], ids=[r[2] for r in VALID])
def test_parse_valid(text: str, ns: int) -> None:
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize(("text", "message"), [r[:2] for r in INVALID], ids=[r[2] for r in INVALID])
def test_parse_invalid_has_go_message(text: str, message: str) -> None:
    with pytest.raises(InvalidDuration) as info:
        parse_duration_ns(text)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(("ns", "text"), FORMAT, ids=[t for _, t in FORMAT])
def test_format_matches_go_string(ns: int, text: str) -> None:
    assert format_duration_ns(ns) == text


@pytest.mark.parametrize(
    ("td", "text"),
    [
        (timedelta(hours=24), "24h0m0s"),
        (timedelta(hours=1, minutes=30), "1h30m0s"),
        (timedelta(seconds=1.5), "1.5s"),
        (timedelta(0), "0s"),
        (timedelta(milliseconds=100), "100ms"),
        (timedelta(microseconds=1), "1\u00b5s"),
        (timedelta(days=-1), "-24h0m0s"),
    ],
    ids=["day", "hour-and-half", "fraction", "zero", "ms", "us", "negative"],
)
def test_format_timedelta(td: timedelta, text: str) -> None:
    assert format_duration(td) == text


@pytest.mark.parametrize(
    ("text", "td"),
    [
        ("1500ns", timedelta(microseconds=1)),
        ("1999ns", timedelta(microseconds=1)),
        ("1ns", timedelta(0)),
        ("-1999ns", timedelta(microseconds=-1)),
        ("24h", timedelta(hours=24)),
    ],
    ids=["truncates", "truncates-not-rounds", "below-resolution", "negative-toward-zero", "hours"],
)
def test_parse_to_timedelta_truncates_toward_zero(text: str, td: timedelta) -> None:
    assert parse_duration(text) == td


@pytest.mark.parametrize(
    ("text", "td"),
    [
        ("", timedelta(0)),
        ("10m", timedelta(minutes=10)),
        ("30", timedelta(seconds=30)),
        ("+30", timedelta(seconds=30)),
        ("-5", timedelta(seconds=-5)),
        ("0", timedelta(0)),
        ("1.5s", timedelta(seconds=1.5)),
    ],
    ids=[
        "empty-is-zero",
        "go-duration",
        "integer-seconds",
        "plus-seconds",
        "negative-seconds",
        "zero",
        "fraction",
    ],
)
def test_parse_duration_or_seconds(text: str, td: timedelta) -> None:
    assert parse_duration_or_seconds(text) == td


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc", 'time: invalid duration "abc"\nstrconv.ParseInt: parsing "abc": invalid syntax'),
        (
            "1.5",
            'time: missing unit in duration "1.5"\nstrconv.ParseInt: parsing "1.5": invalid syntax',
        ),
        (
            "1d",
            'time: unknown unit "d" in duration "1d"\n'
            'strconv.ParseInt: parsing "1d": invalid syntax',
        ),
        (
            "99999999999999999999",
            'time: invalid duration "99999999999999999999"\n'
            'strconv.ParseInt: parsing "99999999999999999999": value out of range',
        ),
    ],
    ids=["garbage", "float-seconds", "day-unit", "out-of-range"],
)
def test_parse_duration_or_seconds_joins_both_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidDuration) as info:
        parse_duration_or_seconds(text)
    assert str(info.value) == message


def test_seconds_that_overflow_a_go_duration_are_refused() -> None:
    with pytest.raises(InvalidDuration, match="does not fit"):
        parse_duration_or_seconds("9223372037")


# --- properties ----------------------------------------------------------------------------

_UNITS = {
    "ns": NANOSECOND,
    "us": MICROSECOND,
    "\u00b5s": MICROSECOND,
    "\u03bcs": MICROSECOND,
    "ms": MILLISECOND,
    "s": SECOND,
    "m": MINUTE,
    "h": HOUR,
}
_FAST = settings(max_examples=150, deadline=None, database=None)

component = st.tuples(
    st.integers(min_value=0, max_value=99_999),
    st.one_of(st.none(), st.text(alphabet="0123456789", max_size=7)),
    st.sampled_from(sorted(_UNITS)),
)


@_FAST
@given(st.sampled_from(["", "-", "+"]), st.lists(component, min_size=1, max_size=4))
def test_generated_durations_equal_the_arithmetic_sum(
    sign: str, parts: list[tuple[int, str | None, str]]
) -> None:
    text = sign + "".join(
        f"{whole}{'' if frac is None else '.' + frac}{unit}" for whole, frac, unit in parts
    )
    exact = sum(
        (whole + (Fraction(int(frac), 10 ** len(frac)) if frac else 0)) * _UNITS[unit]
        for whole, frac, unit in parts
    )
    got = parse_duration_ns(text)
    expected = -exact if sign == "-" else exact
    # Go computes each fraction in float64 and truncates: at most 1 ns off per component.
    assert abs(got - expected) <= len(parts)


@_FAST
@given(st.integers(min_value=-(1 << 63), max_value=MAX_INT64))
def test_format_then_parse_round_trips_ns(ns: int) -> None:
    assert parse_duration_ns(format_duration_ns(ns)) == ns


@_FAST
@given(st.timedeltas(min_value=timedelta(days=-106_000), max_value=timedelta(days=106_000)))
def test_format_then_parse_round_trips_timedelta(td: timedelta) -> None:
    assert parse_duration(format_duration(td)) == td


_GRAMMAR = re.compile(r"[-+]?(0|(([0-9]+\.?[0-9]*|\.[0-9]+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h))+)")


@_FAST
@given(st.text(alphabet="0123456789.+-nsuµμmhd x", max_size=10))
def test_strings_outside_the_grammar_raise_invalid_duration(text: str) -> None:
    if _GRAMMAR.fullmatch(text):
        try:
            parse_duration_ns(text)
        except InvalidDuration as err:  # only overflow may fail inside the grammar
            assert str(err).startswith("time: invalid duration")
    else:
        with pytest.raises(InvalidDuration):
            parse_duration_ns(text)
