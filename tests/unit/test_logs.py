"""Dapr-shaped log records: text and JSON."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from pysentry import __version__, logs
from pysentry.errors import ConfigError


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


def _emit(stream: io.StringIO, level: int, msg: str, *args: object, **kw: object) -> str:
    logging.getLogger("pysentry.test").log(level, msg, *args, **kw)  # type: ignore[arg-type]
    return stream.getvalue().splitlines()[-1]


_TEXT = re.compile(
    r'^time="(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z)" level=(?P<level>\w+) '
    r"msg=(?P<msg>\"(?:[^\"\\]|\\.)*\"|\S*) (?P<rest>.*)$"
)


def test_text_shape(restore_root: None) -> None:
    out = io.StringIO()
    logs.configure(
        "info", as_json=False, scope="dapr.sentry", app_id="myapp", stream=out, instance="host-1"
    )
    line = _emit(out, logging.INFO, "Security is initialized %s", "successfully")
    m = _TEXT.match(line)
    assert m, line
    assert m["level"] == "info"
    assert m["msg"] == '"Security is initialized successfully"'
    assert m["rest"] == f"app_id=myapp instance=host-1 scope=dapr.sentry type=log ver={__version__}"


def test_json_shape(restore_root: None) -> None:
    out = io.StringIO()
    logs.configure("debug", as_json=True, scope="dapr.runtime", stream=out, instance="h")
    line = _emit(out, logging.WARNING, "cert expires on: %s", "2024-01-01")
    record = json.loads(line)
    assert set(record) == {"time", "level", "type", "msg", "scope", "instance", "ver"}
    assert record["level"] == "warning"
    assert record["type"] == "log"
    assert record["msg"] == "cert expires on: 2024-01-01"
    assert record["scope"] == "dapr.runtime"
    assert record["instance"] == "h"
    assert record["ver"] == __version__
    assert list(record) == sorted(record)  # keys sorted like Go's encoder
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z", record["time"])


def test_json_app_id_and_extra_fields(restore_root: None) -> None:
    out = io.StringIO()
    logs.configure(as_json=True, scope="dapr.runtime", app_id="a1", stream=out)
    line = _emit(
        out,
        logging.INFO,
        "hi",
        extra={"scope": "dapr.runtime.security", "fields": {"method": "GET"}},
    )
    record = json.loads(line)
    assert record["app_id"] == "a1"
    assert record["scope"] == "dapr.runtime.security"
    assert record["method"] == "GET"


@pytest.mark.parametrize(
    ("levelno", "name"),
    [
        (logging.DEBUG, "debug"),
        (logging.INFO, "info"),
        (logging.WARNING, "warning"),
        (logging.ERROR, "error"),
        (logging.CRITICAL, "fatal"),
    ],
    ids=["debug", "info", "warning", "error", "fatal"],
)
def test_level_names(restore_root: None, levelno: int, name: str) -> None:
    out = io.StringIO()
    logs.configure("debug", as_json=True, stream=out)
    assert json.loads(_emit(out, levelno, "x"))["level"] == name


def test_level_filtering_and_replacing_the_handler(restore_root: None) -> None:
    first = io.StringIO()
    logs.configure("error", stream=first)
    logging.getLogger("pysentry.test").warning("dropped")
    assert first.getvalue() == ""
    second = io.StringIO()
    logs.configure("warn", stream=second)
    logging.getLogger("pysentry.test").warning("kept")
    assert first.getvalue() == ""
    assert "msg=kept" in second.getvalue()
    dapr_handlers = [h for h in logging.getLogger().handlers if isinstance(h, logs._DaprHandler)]
    assert len(dapr_handlers) == 1


def test_invalid_level() -> None:
    with pytest.raises(ConfigError, match=r"invalid log level 'verbose'"):
        logs.configure("verbose")


def test_exception_goes_into_msg(restore_root: None) -> None:
    out = io.StringIO()
    logs.configure(as_json=True, stream=out)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("pysentry.test").exception("failed to sign certificate")
    record = json.loads(out.getvalue())
    assert record["level"] == "error"
    assert record["msg"].startswith("failed to sign certificate\nTraceback")
    assert "RuntimeError: boom" in record["msg"]


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("dapr.sentry", "dapr.sentry"),
        ("a b", '"a b"'),
        ('say "x"', '"say \\"x\\""'),
        ("", ""),
        ("k=v", '"k=v"'),
    ],
    ids=["bare", "space", "quotes", "empty", "equals"],
)
def test_logrus_quoting(value: str, quoted: str) -> None:
    assert logs._quote(value) == quoted


@pytest.mark.parametrize(
    ("at", "text"),
    [
        (datetime(2024, 1, 1, tzinfo=UTC), "2024-01-01T00:00:00Z"),
        (datetime(2024, 1, 1, 0, 0, 0, 120000, tzinfo=UTC), "2024-01-01T00:00:00.12Z"),
        (datetime(2024, 1, 1, 0, 0, 0, 5, tzinfo=UTC), "2024-01-01T00:00:00.000005Z"),
    ],
    ids=["whole", "trimmed", "micro"],
)
def test_rfc3339nano(at: datetime, text: str) -> None:
    assert logs.format_time(at) == text


def test_scopes_follow_the_longest_logger_prefix(restore_root: None) -> None:
    out = io.StringIO()
    scopes = {"pysentry.sidecar": "dapr.runtime", "pysentry.sidecar.http_api": "dapr.runtime.http"}
    logs.configure("debug", as_json=True, scope="dapr.runtime", stream=out, scopes=scopes)
    logging.getLogger("pysentry.sidecar.http_api").info("a")
    logging.getLogger("pysentry.sidecar.http_api.sub").info("b")
    logging.getLogger("pysentry.sidecar.other").info("c")
    logging.getLogger("elsewhere").info("d")
    logging.getLogger("pysentry.sidecar.http_api").info("e", extra={"scope": "dapr.x"})
    got = [json.loads(line)["scope"] for line in out.getvalue().splitlines()]
    assert got == [
        "dapr.runtime.http",
        "dapr.runtime.http",
        "dapr.runtime",
        "dapr.runtime",
        "dapr.x",
    ]


def test_sentry_keeps_one_scope(restore_root: None) -> None:
    out = io.StringIO()
    logs.configure("info", scope="dapr.sentry", stream=out)
    logging.getLogger("pysentry.security.provider").info("x")
    assert "scope=dapr.sentry " in out.getvalue()
