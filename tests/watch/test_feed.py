"""A feed replays its range from the log, joins the hub with no gap and no duplicate, falls
behind when its consumer is full, and reports compaction and failures."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer
from zope.interface.verify import verifyObject

from k8s_sql.store.errors import Unavailable
from k8s_sql.store.model import Event, EventType, KeyValue
from k8s_sql.watch.feed import ALL_EVENTS, Feed, IFeedConsumer, Revisions
from k8s_sql.watch.follower import Follower
from k8s_sql.store.keys import KeyRange
from k8s_sql.watch.hub import IWatcher, WatchHub
from tests.watch.doubles import MemoryLog


@implementer(IFeedConsumer)
class Consumer:
    """Records deliveries; its room is switched by the test."""

    def __init__(self) -> None:
        self.deliveries: list[list[tuple[int, list[bytes]]]] = []
        self.full = False
        self.waiting: list[Deferred[None]] = []
        self.events: list[str] = []
        self.compact_revision = 0
        self.failure: Failure | None = None

    def has_room(self) -> bool:
        return not self.full

    def room(self) -> Deferred[None]:
        waiter: Deferred[None] = Deferred()
        self.waiting.append(waiter)
        return waiter

    def deliver(self, revisions: Revisions) -> None:
        self.deliveries.append([(revision, [event.kv.key for event in events]) for revision, events in revisions])

    def synced(self) -> None:
        self.events.append("synced")

    def compacted(self, compact_revision: int) -> None:
        self.events.append("compacted")
        self.compact_revision = compact_revision

    def failed(self, reason: Failure) -> None:
        self.events.append("failed")
        self.failure = reason

    def make_room(self) -> None:
        self.full = False
        while self.waiting:
            self.waiting.pop(0).callback(None)

    def revisions(self) -> list[int]:
        return [revision for delivery in self.deliveries for revision, _ in delivery]


class World:
    """A log, a hub fed by a follower (every commit pokes it), and feeds on them."""

    def __init__(self, manual: bool = False) -> None:
        self.log = MemoryLog(manual=manual)
        self.hub = WatchHub()
        self.follower = Follower(self.log, self.hub, Clock())
        self.follower.startService()
        if manual:
            self.log.answer()

    def feed(self, key_range: KeyRange, start: int, batch_size: int = 1000, types: frozenset[EventType] = ALL_EVENTS) -> tuple[Feed, Consumer]:
        consumer = Consumer()
        feed = Feed(self.hub, self.log, key_range, start, consumer, types=types, batch_size=batch_size)
        feed.start()
        return feed, consumer


EVERYTHING = KeyRange(b"\x00", None)


def test_interfaces() -> None:
    world = World()
    feed, consumer = world.feed(EVERYTHING, 0)
    verifyObject(IFeedConsumer, consumer)
    verifyObject(IWatcher, feed)


def test_a_feed_from_the_next_revision_joins_the_hub_without_reading() -> None:
    world = World()
    feed, consumer = world.feed(EVERYTHING, world.hub.revision + 1)
    assert feed.live and consumer.events == ["synced"]
    assert len(world.log.reads) == 1  # the follower's own
    world.log.write((b"a", b"1"))
    assert consumer.deliveries == [[(2, [b"a"])]]


def test_replay_then_live_without_gap_or_duplicate() -> None:
    world = World()
    for number in range(5):
        world.log.write((b"k%d" % number, b"v"))
    feed, consumer = world.feed(EVERYTHING, 3)
    assert consumer.deliveries == [[(3, [b"k1"]), (4, [b"k2"]), (5, [b"k3"]), (6, [b"k4"])]]
    assert feed.live and consumer.events == ["synced"]
    world.log.write((b"k5", b"v"))
    world.log.write((b"k6", b"v"))
    assert consumer.revisions() == [3, 4, 5, 6, 7, 8]
    assert consumer.deliveries[1:] == [[(7, [b"k5"])], [(8, [b"k6"])]]


def test_commits_during_the_replay_are_neither_lost_nor_repeated() -> None:
    world = World(manual=True)
    for _ in range(3):
        world.log.write((b"k", b"v"))
        world.log.answer()
    feed, consumer = world.feed(KeyRange.one(b"k"), 2, batch_size=1)
    # The feed's first read is in flight; the follower publishes two more revisions.
    world.log.write((b"k", b"v"))
    world.log.write((b"k", b"v"))
    feed_read = world.log.pending.pop(0)
    world.log.answer()
    world.log.pending.insert(0, feed_read)
    assert world.hub.revision == 6
    while world.log.pending:
        world.log.answer()
    world.log.write((b"k", b"v"))
    while world.log.pending:
        world.log.answer()
    assert consumer.revisions() == [2, 3, 4, 5, 6, 7]
    assert feed.live


def test_a_replay_that_reads_past_the_hub_skips_those_revisions_live() -> None:
    """The log may be ahead of the hub; revisions read from it are not delivered twice."""
    world = World(manual=True)
    world.log.write((b"a", b"1"))
    world.log.answer()
    world.log.write((b"a", b"2"), notify=False)
    world.log.write((b"a", b"3"), notify=False)
    assert world.hub.revision == 2
    feed, consumer = world.feed(EVERYTHING, 2)
    world.log.answer()
    assert consumer.deliveries == [[(2, [b"a"]), (3, [b"a"]), (4, [b"a"])]]
    assert feed.live and feed.position == 4
    world.log.write((b"a", b"4"))
    world.log.answer()
    assert world.hub.revision == 5
    assert consumer.revisions() == [2, 3, 4, 5]


def test_only_the_range_and_the_requested_kinds_are_delivered() -> None:
    world = World()
    world.log.write((b"/a/1", b"v"), (b"/b/1", b"v"))
    world.log.write((b"/a/1", None))
    feed, consumer = world.feed(KeyRange(b"/a/", b"/a0"), 1, types=frozenset({EventType.DELETE}))
    world.log.write((b"/a/2", b"v"))
    world.log.write((b"/a/2", None), (b"/b/1", None))
    assert consumer.deliveries == [[(3, [b"/a/1"])], [(5, [b"/a/2"])]]
    assert feed.position == 5


def test_a_start_in_the_future_waits_for_its_revision() -> None:
    world = World()
    feed, consumer = world.feed(EVERYTHING, 4)
    assert feed.live
    world.log.write((b"a", b"1"))
    world.log.write((b"a", b"2"))
    assert consumer.deliveries == []
    world.log.write((b"a", b"3"))
    assert consumer.deliveries == [[(4, [b"a"])]]


def test_a_full_consumer_makes_the_feed_fall_behind_and_catch_up_from_the_log() -> None:
    world = World()
    feed, consumer = world.feed(EVERYTHING, world.hub.revision + 1)
    world.log.write((b"a", b"1"))
    consumer.full = True
    world.log.write((b"b", b"1"))
    world.log.write((b"c", b"1"))
    assert not feed.live and len(world.hub) == 0
    assert consumer.revisions() == [2]
    reads = len(world.log.reads)
    consumer.make_room()
    assert len(world.log.reads) == reads + 1
    assert consumer.deliveries[1] == [(3, [b"b"]), (4, [b"c"])]
    assert feed.live and consumer.events == ["synced", "synced"]
    world.log.write((b"d", b"1"))
    assert consumer.revisions() == [2, 3, 4, 5]


def read_answered_while_full() -> tuple[World, Feed, Consumer]:
    """A feed whose read of one event was answered while its consumer was full."""
    world = World(manual=True)
    world.log.write((b"a", b"1"))
    world.log.answer()
    feed, consumer = world.feed(EVERYTHING, 1)
    consumer.full = True
    world.log.answer()
    return world, feed, consumer


def test_a_read_answered_while_the_consumer_is_full_waits_for_room() -> None:
    """Other feeds of the consumer may fill it while a feed reads: it delivers later."""
    world, feed, consumer = read_answered_while_full()
    assert consumer.deliveries == [] and not feed.live
    consumer.make_room()
    assert consumer.deliveries == [[(2, [b"a"])]] and feed.live


def test_a_feed_stopped_while_waiting_for_room_delivers_nothing() -> None:
    world, feed, consumer = read_answered_while_full()
    feed.stop()
    consumer.make_room()
    assert consumer.deliveries == [] and consumer.events == [] and len(world.hub) == 0


def test_a_feed_left_behind_compaction_is_cancelled_with_the_compact_revision() -> None:
    world = World()
    world.log.write((b"a", b"1"))
    world.log.write((b"a", b"2"))
    world.log.compact(3)
    feed, consumer = world.feed(EVERYTHING, 2)
    assert consumer.events == ["compacted"] and consumer.compact_revision == 3
    assert consumer.deliveries == [] and not feed.live


def test_a_slow_feed_overtaken_by_compaction_is_cancelled() -> None:
    world = World()
    feed, consumer = world.feed(EVERYTHING, world.hub.revision + 1)
    consumer.full = True
    world.log.write((b"a", b"1"))
    world.log.write((b"a", b"2"))
    world.log.compact(3)
    consumer.make_room()
    assert consumer.events == ["synced", "compacted"] and consumer.compact_revision == 3
    assert len(world.hub) == 0


def test_read_failures_are_reported() -> None:
    world = World()
    world.log.write((b"a", b"1"))
    world.log.fail_next_read(Unavailable("gone"))
    feed, consumer = world.feed(EVERYTHING, 1)
    assert consumer.events == ["failed"]
    assert consumer.failure is not None and consumer.failure.check(Unavailable)


def test_stop_lets_go_of_the_hub_and_of_reads_in_flight() -> None:
    world = World(manual=True)
    live, live_consumer = world.feed(EVERYTHING, world.hub.revision + 1)
    world.log.write((b"a", b"1"))
    world.log.answer()
    replaying, replay_consumer = world.feed(EVERYTHING, 1)
    assert len(world.hub) == 1 and len(world.log.pending) == 1
    live.stop()
    replaying.stop()
    assert len(world.hub) == 0
    world.log.answer()
    world.log.write((b"b", b"1"))
    world.log.answer()
    assert live_consumer.revisions() == [2]
    assert replay_consumer.deliveries == [] and replay_consumer.events == []


def test_a_resync_sends_live_feeds_behind_back_to_the_log() -> None:
    world = World()
    feed, consumer = world.feed(EVERYTHING, world.hub.revision + 1)
    world.log.write((b"a", b"1"), notify=False)
    world.log.write((b"a", b"2"), notify=False)
    world.hub.resync(3)
    assert consumer.deliveries == [[(2, [b"a"]), (3, [b"a"])]]
    assert feed.live and consumer.events == ["synced", "synced"]


def test_a_feed_reads_up_to_its_floor_from_the_log_when_the_hub_lags() -> None:
    """A watch made at the compaction revision gets what the log keeps of it (puts without
    prev_kv), even if the hub still holds that revision as it was read before compaction."""
    log = MemoryLog()
    log.write((b"a", b"1"), notify=False)
    log.write((b"a", b"2"), notify=False)
    log.compact(3)
    hub = WatchHub(revision=1)  # its follower has not published 2 and 3 yet
    delivered: list[tuple[int, bytes, bool]] = []

    class Recorder(Consumer):
        def deliver(self, revisions: Revisions) -> None:
            delivered.extend((revision, event.kv.key, event.prev_kv is not None)
                             for revision, events in revisions for event in events)

    feed = Feed(hub, log, EVERYTHING, 3, Recorder(), floor=3)
    feed.start()
    assert delivered == [(3, b"a", False)] and feed.live
    # The lagging hub catches up with what its follower read before the compaction.
    before = KeyValue(b"a", 2, 2, 1, b"1")
    hub.publish(2, [Event(EventType.PUT, before)])
    hub.publish(3, [Event(EventType.PUT, KeyValue(b"a", 2, 3, 2, b"2"), before)])
    assert delivered == [(3, b"a", False)]
    log.write((b"a", b"3"), notify=False)
    hub.publish(4, [Event(EventType.PUT, KeyValue(b"a", 2, 4, 3, b"3"), before)])
    assert delivered[-1] == (4, b"a", True)
