"""Log output: JSON lines and Twisted's text, filtered by level."""

from __future__ import annotations

import io
import json

import pytest
from twisted.logger import ILogObserver, Logger, LogLevel, LogPublisher
from twisted.python import log as legacy
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from k8s_sql.logs import LOG_LEVELS, event_as_json, log_observer


def emitting(log_format: str, level: str) -> tuple[Logger, io.StringIO]:
    out = io.StringIO()
    publisher = LogPublisher(log_observer(log_format, level, out))
    return Logger(namespace="k8s_sql.test", observer=publisher), out


def test_json_lines_carry_the_message_and_the_fields() -> None:
    log, out = emitting("json", "info")
    log.info("serving on {address} ({endpoint})", address="127.0.0.1:2379", endpoint="tcp:2379", count=3)
    (line,) = out.getvalue().splitlines()
    record = json.loads(line)
    assert record.pop("ts").endswith("Z")
    assert record == {
        "level": "info", "logger": "k8s_sql.test", "msg": "serving on 127.0.0.1:2379 (tcp:2379)",
        "address": "127.0.0.1:2379", "endpoint": "tcp:2379", "count": 3,
    }


def test_json_lines_carry_failures_and_text_for_what_json_cannot_hold() -> None:
    log, out = emitting("json", "info")
    try:
        raise RuntimeError("the database went away")
    except RuntimeError:
        log.failure("Reading failed for {who}", who=b"\xff", obj=object())
    record = json.loads(out.getvalue())
    assert (record["level"], record["msg"]) == ("critical", "Reading failed for b'\\xff'")
    assert record["error"] == "RuntimeError: the database went away"
    assert "Traceback" in record["traceback"] and record["who"] == "b'\\xff'"
    assert record["obj"].startswith("<object object")


def test_legacy_events_become_json_lines_too() -> None:
    record = json.loads(event_as_json({
        "message": ("TCP Port 2379 Closed",), "isError": 0, "system": "-", "time": 0.0,
        "log_format": "{log_text}", "log_text": "TCP Port 2379 Closed", "log_level": LogLevel.info,
        "log_namespace": "log_legacy", "log_time": 0.0,
    }))
    assert record == {"ts": "1970-01-01T00:00:00.000Z", "level": "info", "logger": "log_legacy",
                      "msg": "TCP Port 2379 Closed"}


def test_text_lines_are_twisteds() -> None:
    log, out = emitting("text", "info")
    log.warn("slow {what}", what="commit")
    assert out.getvalue().endswith(" [k8s_sql.test#warn] slow commit\n")


@pytest.mark.parametrize(("level", "written"), [
    ("debug", ["debug", "info", "warn", "error", "critical"]),
    ("info", ["info", "warn", "error", "critical"]),
    ("warn", ["warn", "error", "critical"]),
    ("critical", ["critical"]),
])
def test_levels_below_the_threshold_are_dropped(level: str, written: list[str]) -> None:
    log, out = emitting("json", level)
    for name in LOG_LEVELS:
        log.emit(LogLevel.levelWithName(name), "at {name}", name=name)
    assert [json.loads(line)["level"] for line in out.getvalue().splitlines()] == written


def test_the_observer_is_a_log_observer_and_checks_its_settings() -> None:
    assert verifyObject(ILogObserver, log_observer("text", "info", io.StringIO()))
    with pytest.raises(ValueError, match="log format"):
        log_observer("xml", "info", io.StringIO())
    with pytest.raises(ValueError, match="log level"):
        log_observer("json", "verbose", io.StringIO())


def test_legacy_log_calls_reach_the_observer() -> None:
    out = io.StringIO()
    observer = log_observer("json", "info", out)
    legacy.addObserver(observer)  # through the legacy log system, as Twisted's ports log
    try:
        legacy.msg("TCP Port 2379 Closed")
        legacy.err(Failure(ValueError("bad")), "while closing")
    finally:
        legacy.removeObserver(observer)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [record["msg"] for record in records][:1] == ["TCP Port 2379 Closed"]
    assert (records[1]["msg"], records[1]["error"], records[1]["level"]) == ("while closing", "ValueError: bad", "critical")
