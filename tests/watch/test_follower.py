"""The follower tails the log in order, coalescing pokes (commits, polls), and surviving failures."""

from __future__ import annotations

from collections.abc import Sequence

from twisted.application.service import IService
from twisted.internet.task import Clock
from twisted.logger import Logger
from zope.interface import implementer
from zope.interface.verify import verifyObject

from k8s_sql.store.keys import KeyRange
from k8s_sql.store.model import Event
from k8s_sql.watch.follower import Follower, IFollower
from k8s_sql.watch.hub import IWatcher, WatchHub
from tests.watch.doubles import MemoryLog


@implementer(IWatcher)
class Recorder:
    def __init__(self) -> None:
        self.received: list[tuple[int, list[bytes]]] = []
        self.resyncs: list[int] = []

    def publish(self, revision: int, events: Sequence[Event]) -> None:
        self.received.append((revision, [event.kv.key for event in events]))

    def resync(self, revision: int) -> None:
        self.resyncs.append(revision)


def started(log: MemoryLog, batch_size: int = 1000) -> tuple[Follower, WatchHub, Clock, Recorder]:
    """A follower of ``log``, on the clock the log's commit signals poll by."""
    clock = log.clock
    hub = WatchHub()
    watcher = Recorder()
    follower = Follower(log, hub, clock, batch_size=batch_size, retry_interval=5.0)
    follower.startService()
    hub.add(watcher, KeyRange(b"\x00", None))
    return follower, hub, clock, watcher


def test_interfaces() -> None:
    follower = Follower(MemoryLog(), WatchHub(), Clock())
    verifyObject(IFollower, follower)
    verifyObject(IService, follower)


def test_a_fresh_hub_starts_at_the_current_revision() -> None:
    log = MemoryLog()
    log.write((b"old", b"1"))
    log.write((b"old", b"2"))
    follower, hub, clock, watcher = started(log)
    assert hub.revision == 3
    assert watcher.received == []
    assert log.reads == [(3, 1000)]


def test_local_commits_are_published_at_once_in_order() -> None:
    log = MemoryLog()
    follower, hub, clock, watcher = started(log)
    log.write((b"a", b"1"), (b"b", b"1"))
    log.write((b"a", None))
    assert watcher.received == [(2, [b"a", b"b"]), (3, [b"a"])]
    assert hub.revision == 3


def test_pokes_coalesce_into_one_read_in_flight_and_one_more() -> None:
    log = MemoryLog(manual=True)
    follower, hub, clock, watcher = started(log)
    log.answer()  # the current revision is 1: nothing yet
    assert log.reads == [(1, 1000)]
    log.write((b"a", b"1"))
    assert len(log.pending) == 1
    for number in range(5):
        log.write((b"k%d" % number, b"1"))
        follower.poke()
    assert len(log.pending) == 1, "one read in flight at a time"
    log.answer()  # sees everything committed so far
    assert [revision for revision, _ in watcher.received] == [2, 3, 4, 5, 6, 7]
    assert len(log.pending) == 1, "the pokes during the read cause one more read"
    log.answer()
    assert log.pending == []
    assert len(log.reads) == 3


def test_pokes_for_published_revisions_are_ignored() -> None:
    log = MemoryLog()
    follower, hub, clock, watcher = started(log)
    log.write((b"a", b"1"))
    reads = len(log.reads)
    follower.poke(2)
    follower.poke(1)
    assert len(log.reads) == reads


def test_other_servers_commits_are_found_by_polling() -> None:
    log = MemoryLog(poll_interval=2.0)
    follower, hub, clock, watcher = started(log)
    log.write((b"remote", b"1"), notify=False)
    clock.advance(1.9)
    assert watcher.received == []
    clock.advance(0.1)
    assert watcher.received == [(2, [b"remote"])]
    log.write((b"remote", b"2"), notify=False)
    clock.advance(2.0)
    assert watcher.received == [(2, [b"remote"]), (3, [b"remote"])]


def test_without_polling_only_pokes_read() -> None:
    log = MemoryLog()
    follower, hub, clock, watcher = started(log)
    log.write((b"remote", b"1"), notify=False)
    clock.advance(3600)
    assert watcher.received == []
    follower.poke(2)
    assert watcher.received == [(2, [b"remote"])]


def test_failed_reads_are_logged_and_retried_and_polling_goes_on() -> None:
    log = MemoryLog(poll_interval=10.0)
    follower, hub, clock, watcher = started(log)
    logged: list[dict] = []
    follower.log = Logger(observer=logged.append)
    log.fail_next_read(RuntimeError("a bug"))
    log.write((b"a", b"1"))
    assert watcher.received == []
    assert len(logged) == 1 and logged[0]["log_failure"] is not None
    clock.advance(5.0)  # the retry
    assert watcher.received == [(2, [b"a"])]
    log.fail_next_read()
    log.fail_next_read()
    log.write((b"b", b"1"), notify=False)
    clock.advance(5.0)  # the poll fails, and so does its retry five seconds on
    clock.advance(5.0)
    assert watcher.received == [(2, [b"a"])]
    clock.advance(5.0)
    assert watcher.received == [(2, [b"a"]), (3, [b"b"])]
    assert len(logged) == 1  # an unavailable database is reported once, by the store, not here


def test_large_backlogs_are_read_in_batches_of_whole_revisions() -> None:
    log = MemoryLog(poll_interval=1.0)
    follower, hub, clock, watcher = started(log, batch_size=2)
    log.write((b"a", b"1"), (b"b", b"1"), (b"c", b"1"), notify=False)
    log.write((b"d", b"1"), notify=False)
    log.write((b"e", b"1"), notify=False)
    clock.advance(1.0)
    assert watcher.received == [(2, [b"a", b"b", b"c"]), (3, [b"d"]), (4, [b"e"])]
    assert log.reads[1:] == [(1, 2), (2, 2), (4, 2)]


def test_a_follower_left_behind_compaction_resyncs_the_hub() -> None:
    log = MemoryLog(poll_interval=1.0)
    follower, hub, clock, watcher = started(log)
    log.write((b"a", b"1"), notify=False)
    log.write((b"a", b"2"), notify=False)
    log.compact(3)
    log.write((b"a", b"3"), notify=False)
    clock.advance(1.0)
    assert watcher.resyncs == [4]
    assert hub.revision == 4
    assert watcher.received == []
    log.write((b"a", b"4"))
    assert watcher.received == [(5, [b"a"])]


def test_a_follower_one_revision_behind_compaction_resyncs_rather_than_lose_a_deletion() -> None:
    """Watches may start at the compaction revision and get what etcd keeps of it; the
    follower, which feeds live watchers, must not: a deletion there would be lost."""
    log = MemoryLog(poll_interval=1.0)
    follower, hub, clock, watcher = started(log)
    log.write((b"a", b"1"))
    log.write((b"a", None), notify=False)
    log.compact(3)
    clock.advance(1.0)
    assert watcher.resyncs == [3] and watcher.received == [(2, [b"a"])]


def test_sync_fires_after_a_read_that_began_after_it() -> None:
    log = MemoryLog(manual=True)
    follower, hub, clock, watcher = started(log)
    log.answer()
    log.write((b"a", b"1"))  # a read is now in flight
    synced: list[int] = []
    follower.sync().addCallback(lambda _: synced.append(hub.revision))
    log.answer()  # the read begun before sync: not enough
    assert synced == []
    log.answer()
    assert synced == [2]


def test_stopping_stops_reading_and_releases_waiters() -> None:
    log = MemoryLog(manual=True)
    follower, hub, clock, watcher = started(log)
    synced: list[None] = []
    follower.sync().addCallback(synced.append)
    follower.stopService()
    assert synced == [None]
    assert len(log.signals) == 0
    log.write((b"a", b"1"))
    clock.advance(60)
    assert len(log.reads) == 1
    assert watcher.received == []


def test_a_revision_signalled_again_while_a_read_that_will_see_it_runs_costs_no_read() -> None:
    """A commit is visible before it is signalled: a read begun after its first signal sees it."""
    log = MemoryLog(manual=True)
    follower, hub, clock, watcher = started(log)
    log.answer()
    log.write((b"a", b"1"), notify=False)
    follower.poke(2)  # a peer's signal: the read begins
    follower.poke(2)  # the same commit, by NOTIFY
    follower.poke(1)
    assert len(log.pending) == 1
    log.answer()
    assert [revision for revision, _ in watcher.received] == [2]
    assert log.pending == [], "no second read"
    log.write((b"b", b"1"), notify=False)
    follower.poke(3)
    follower.poke(3)
    log.write((b"c", b"1"), notify=False)
    follower.poke(4)  # newer than the read under way was asked for: one more read
    log.answer()
    assert len(log.pending) == 1
    log.answer()
    assert [revision for revision, _ in watcher.received] == [2, 3, 4]
