"""Log output of the k8s-sql process: text or JSON lines, filtered by level.

Text is Twisted's classic format (``2024-05-01T12:00:00+0000 [namespace#level] message``).
JSON is one object per line, as log collectors expect::

    {"ts": "2024-05-01T12:00:00.123Z", "level": "info", "logger": "k8s_sql.service.K8sSQLService",
     "msg": "k8s-sql serving the etcd API on 127.0.0.1:2379 (tcp:2379:interface=127.0.0.1)",
     "address": "127.0.0.1:2379", "endpoint": "tcp:2379:interface=127.0.0.1"}

with the event's own fields beside the formatted message, and ``error`` and
``traceback`` when the event carries a failure.
"""

from __future__ import annotations

import datetime
import json
from typing import IO, Any

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    eventAsText,
    formatEventAsClassicLogText,
)
from twisted.python.failure import Failure
from zope.interface import implementer

#: The values of ``--log-format``.
LOG_FORMATS = ("text", "json")
#: The values of ``--log-level``, most verbose first.
LOG_LEVELS = tuple(
    level.name for level in (LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.error, LogLevel.critical)
)

# Keys of legacy (twisted.python.log) events that the JSON line already renders.
_LEGACY_KEYS = frozenset({"message", "isError", "system", "time", "format", "failure", "why"})


def event_as_json(event: dict[str, Any]) -> str:
    """One log event as a line of JSON (see the module docstring)."""
    when = datetime.datetime.fromtimestamp(event.get("log_time", 0.0), datetime.UTC)
    level = event.get("log_level", LogLevel.info)
    failure = event.get("log_failure")
    if failure is None and isinstance(event.get("failure"), Failure):
        # twisted.python.log.err: its text would hold the traceback; the reason is "why".
        failure, message = event["failure"], event.get("why") or "Unhandled error"
    else:
        message = eventAsText(event, includeTraceback=False, includeTimestamp=False, includeSystem=False)
    record: dict[str, Any] = {
        "ts": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": level.name,
        "logger": event.get("log_namespace", "-"),
        "msg": message,
    }
    for key, value in event.items():
        if not key.startswith("log_") and key not in _LEGACY_KEYS and key not in record:
            record[key] = _jsonable(value)
    if failure is not None:
        record["error"] = f"{failure.type.__name__}: {failure.getErrorMessage()}"
        record["traceback"] = failure.getTraceback()
    return json.dumps(record, ensure_ascii=False) + "\n"


def _jsonable(value: Any) -> Any:
    """``value`` if JSON can carry it as it is, else its text."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


def log_observer(log_format: str, level: str, out: IO[str], worker: int | None = None) -> ILogObserver:
    """An observer writing events at ``level`` or above to ``out`` in ``log_format``; the
    events of a worker process say which (``worker`` field, ``[worker N ...]`` in text)."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"unknown log format {log_format!r}: use {' or '.join(LOG_FORMATS)}")
    if level not in LOG_LEVELS:
        raise ValueError(f"unknown log level {level!r}: use one of {', '.join(LOG_LEVELS)}")
    formatter = event_as_json if log_format == "json" else formatEventAsClassicLogText
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))
    observer: ILogObserver = FilteringLogObserver(FileLogObserver(out, formatter), [predicate])
    return observer if worker is None else _WorkerEvents(observer, worker)


@implementer(ILogObserver)
class _WorkerEvents:
    """Passes events on, marked as a worker process's."""

    def __init__(self, observer: ILogObserver, worker: int) -> None:
        self.observer = observer
        self.worker = worker

    def __call__(self, event: dict[str, Any]) -> None:
        """Mark ``event`` and pass it on."""
        level = event.get("log_level", LogLevel.info)
        system = f"worker {self.worker} {event.get('log_namespace', '-')}#{level.name}"
        self.observer({**event, "worker": self.worker, "log_system": system})
