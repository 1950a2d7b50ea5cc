"""Watches catching up together share their reads of the log."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from k8s_sql.store.errors import Unavailable
from k8s_sql.store.interfaces import IChangeLog
from k8s_sql.watch.hub import WatchHub
from k8s_sql.watch.reads import SharedReads
from tests.watch.doubles import MemoryLog


def shared() -> tuple[MemoryLog, WatchHub, SharedReads]:
    log = MemoryLog(manual=True)
    hub = WatchHub()
    log.write((b"a", b"1"))
    return log, hub, SharedReads(log, hub)


def results(*reads: Any) -> list[Any]:
    answers: list[Any] = []
    for read in reads:
        read.addBoth(answers.append)
    return answers


def test_interfaces_and_what_is_passed_through() -> None:
    log, hub, reads = shared()
    verifyObject(IChangeLog, reads)
    assert results(reads.current_revision(), reads.compact_revision()) == [2, 0]
    seen: list[int] = []
    unsubscribe = reads.notify_commits(seen.append)
    log.write((b"b", b"1"))
    unsubscribe()
    log.write((b"c", b"1"))
    assert seen == [3]


def test_identical_reads_in_flight_share_one_query_and_its_events() -> None:
    log, hub, reads = shared()
    answers = results(reads.changes(0, 10), reads.changes(0, 10))
    other = results(reads.changes(0, 5))
    assert log.reads == [(0, 10), (0, 5)]
    log.answer()
    log.answer()
    assert answers[0] is answers[1] and [event.kv.key for event in answers[0]] == [b"a"]
    assert other[0] is not answers[0]
    results(reads.changes(0, 10))
    assert log.reads[2:] == [(0, 10)]  # once answered, the same read is a new query


def test_a_read_sent_before_the_hub_moved_is_not_shared() -> None:
    log, hub, reads = shared()
    reads.changes(0, 10)
    hub.resync(2)
    reads.changes(0, 10)
    assert log.reads == [(0, 10), (0, 10)]


def test_cancelling_a_reader_leaves_the_others_their_answer() -> None:
    log, hub, reads = shared()
    first, second = reads.changes(0, 10), reads.changes(0, 10)
    cancelled = results(first)
    first.cancel()
    answers = results(second)
    log.answer()
    assert isinstance(cancelled[0], Failure) and cancelled[0].check(CancelledError)
    assert [event.kv.key for event in answers[0]] == [b"a"]


def test_a_reader_may_cancel_the_readers_after_it() -> None:
    log, hub, reads = shared()
    first, second = reads.changes(0, 10), reads.changes(0, 10)
    first.addCallback(lambda _: second.cancel())
    answers = results(second)
    log.answer()
    assert isinstance(answers[0], Failure) and answers[0].check(CancelledError)


def test_a_failure_reaches_every_reader() -> None:
    log, hub, reads = shared()
    answers = results(reads.changes(0, 10), reads.changes(0, 10))
    log.fail_next_read(Unavailable("gone"))
    log.answer()
    assert [answer.check(Unavailable) for answer in answers] == [Unavailable, Unavailable]
