"""``--pysentry-fastpath`` and ``PYSENTRY_FASTPATH``: on by default, the flag over the env."""

from __future__ import annotations

import pytest

from pysentry.errors import ConfigError
from pysentry.sidecar.options import parse_options


@pytest.mark.parametrize(
    ("argv", "env", "on"),
    [
        ([], {}, True),
        (["--pysentry-fastpath=false"], {}, False),
        (["--pysentry-fastpath", "false"], {}, False),
        (["--pysentry-fastpath"], {"PYSENTRY_FASTPATH": "false"}, True),
        ([], {"PYSENTRY_FASTPATH": "false"}, False),
        ([], {"PYSENTRY_FASTPATH": "0"}, False),
        ([], {"PYSENTRY_FASTPATH": "true"}, True),
    ],
)
def test_fastpath_switch(argv: list[str], env: dict[str, str], on: bool) -> None:
    assert parse_options(["--app-id", "a", *argv], env).fastpath is on


def test_bad_env_value_names_the_variable_and_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"PYSENTRY_FASTPATH: invalid boolean value: 'maybe'"):
        parse_options(["--app-id", "a"], {"PYSENTRY_FASTPATH": "maybe"})
