"""LimitedLog: a token bucket per kind of message, and a count of what it held back."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

from pysentry.sentry.loglimit import LimitedLog


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_a_burst_then_one_line_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="test.loglimit")
    clock = Clock()
    limited = LimitedLog(logging.getLogger("test.loglimit"), burst=3, interval_s=10, clock=clock)
    written = [limited.log("bad", logging.WARNING, "bad request %d", i) for i in range(6)]
    assert written == [True, True, True, False, False, False]
    clock.now = 9.0
    assert not limited.log("bad", logging.WARNING, "bad request %d", 6)
    clock.now = 10.0
    assert limited.log("bad", logging.WARNING, "bad request %d", 7)
    assert messages(caplog) == [
        "bad request 0",
        "bad request 1",
        "bad request 2",
        "Suppressed 4 similar messages (bad) in the last 10s",
        "bad request 7",
    ]


def test_kinds_have_their_own_buckets(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="test.loglimit")
    limited = LimitedLog(logging.getLogger("test.loglimit"), burst=1, interval_s=10, clock=Clock())
    assert limited.log("a", logging.WARNING, "a")
    assert not limited.log("a", logging.WARNING, "a")
    assert limited.log("b", logging.WARNING, "b")
    assert messages(caplog) == ["a", "b"]


def test_a_disabled_level_costs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="test.loglimit")
    limited = LimitedLog(logging.getLogger("test.loglimit"), burst=1, interval_s=10, clock=Clock())
    assert not any(limited.log("a", logging.WARNING, "a") for _ in range(5))
    assert limited.log("a", logging.ERROR, "now")  # no tokens were spent while disabled
    assert messages(caplog) == ["now"]


def test_traceback_only_when_asked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="test.loglimit")
    limited = LimitedLog(logging.getLogger("test.loglimit"), clock=Clock())
    try:
        raise KeyError("bug")
    except KeyError:
        limited.log("internal", logging.ERROR, "failed", exc_info=True)
        limited.log("other", logging.ERROR, "plain")
    assert caplog.records[0].exc_info is not None
    assert not caplog.records[1].exc_info
