"""OutageLog: one warning when the database is lost, one line when it is back."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from k8s_sql.store.outage import OutageLog


def test_one_warning_per_outage_and_one_line_at_its_end() -> None:
    clock = Clock()
    outage = OutageLog("mysql://db", clock)
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        outage.answered()
        for _ in range(5):
            outage.failed(ConnectionError("refused"))
            clock.advance(1)
        assert outage.since == 0 and outage.failures == 5
        outage.answered()
        outage.answered()
        outage.failed(ConnectionError("again"))
    finally:
        globalLogPublisher.removeObserver(events.append)
    lines = [(event["log_level"], formatEvent(event)) for event in events if event["log_namespace"].endswith("OutageLog")]
    assert lines == [
        (LogLevel.warn, "database mysql://db is unavailable (refused); requests fail with Unavailable until it answers again"),
        (LogLevel.info, "database mysql://db answers again after 5.0 s; 5 transactions failed meanwhile"),
        (LogLevel.warn, "database mysql://db is unavailable (again); requests fail with Unavailable until it answers again"),
    ]
    assert outage.outages == 2
