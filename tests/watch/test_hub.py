"""The watch hub hands each revision to exactly the watchers it matches, in order."""

from __future__ import annotations

from collections.abc import Sequence

from twisted.logger import Logger
from zope.interface import implementer
from zope.interface.verify import verifyObject

from k8s_sql.store.keys import KeyRange
from k8s_sql.store.model import Event, EventType, KeyValue
from k8s_sql.watch.hub import IWatcher, IWatchHub, WatchHub


def put(key: bytes, revision: int) -> Event:
    return Event(EventType.PUT, KeyValue(key, create_revision=revision, mod_revision=revision, version=1, value=b"v"))


@implementer(IWatcher)
class Recorder:
    """A watcher that records what it is given and counts how often it is called."""

    def __init__(self) -> None:
        self.received: list[tuple[int, list[bytes]]] = []
        self.resyncs: list[int] = []
        self.calls = 0

    def publish(self, revision: int, events: Sequence[Event]) -> None:
        self.calls += 1
        self.received.append((revision, [event.kv.key for event in events]))

    def resync(self, revision: int) -> None:
        self.resyncs.append(revision)


def test_interfaces() -> None:
    verifyObject(IWatchHub, WatchHub())
    verifyObject(IWatcher, Recorder())


def test_events_reach_matching_watchers_only() -> None:
    hub = WatchHub(1)
    exact, prefix, everything, other = Recorder(), Recorder(), Recorder(), Recorder()
    hub.add(exact, KeyRange.one(b"/a/1"))
    hub.add(prefix, KeyRange(b"/a/", b"/a0"))
    hub.add(everything, KeyRange(b"\x00", None))
    hub.add(other, KeyRange(b"/b/", b"/b0"))
    hub.publish(2, [put(b"/a/1", 2), put(b"/a/2", 2), put(b"/c", 2)])
    assert exact.received == [(2, [b"/a/1"])]
    assert prefix.received == [(2, [b"/a/1", b"/a/2"])]
    assert everything.received == [(2, [b"/a/1", b"/a/2", b"/c"])]
    assert other.received == []
    assert hub.revision == 2


def test_one_call_per_revision_in_revision_order() -> None:
    hub = WatchHub(1)
    watcher = Recorder()
    hub.add(watcher, KeyRange(b"k", b"l"))
    hub.publish(2, [put(b"k1", 2), put(b"k2", 2), put(b"k3", 2)])
    hub.publish(3, [put(b"x", 3)])
    hub.publish(4, [put(b"k3", 4), put(b"k1", 4)])
    assert watcher.received == [(2, [b"k1", b"k2", b"k3"]), (4, [b"k3", b"k1"])]
    assert watcher.calls == 2


def test_an_event_touches_only_the_watchers_it_matches() -> None:
    """1,000 watchers elsewhere (on keys and on ranges) are never called for an event."""
    hub = WatchHub(1)
    bystanders = [Recorder() for _ in range(1000)]
    for number, watcher in enumerate(bystanders):
        if number % 2:
            hub.add(watcher, KeyRange.one(b"/key/%04d" % number))
        else:
            hub.add(watcher, KeyRange(b"/range/%04d/" % number, b"/range/%04d0" % number))
    same_range = [Recorder() for _ in range(3)]
    for watcher in same_range:
        hub.add(watcher, KeyRange(b"/pods/", b"/pods0"))
    hub.publish(2, [put(b"/pods/x", 2)])
    assert sum(watcher.calls for watcher in bystanders) == 0
    assert [watcher.calls for watcher in same_range] == [1, 1, 1]
    assert len(hub) == 1003


def test_removed_watchers_receive_nothing_and_empty_groups_go() -> None:
    hub = WatchHub(1)
    first, second, single = Recorder(), Recorder(), Recorder()
    hub.add(first, KeyRange(b"a", b"b"))
    hub.add(second, KeyRange(b"a", b"b"))
    hub.add(single, KeyRange.one(b"a"))
    hub.remove(first)
    hub.remove(single)
    hub.remove(single)
    hub.publish(2, [put(b"a", 2)])
    assert first.received == [] and single.received == []
    assert second.received == [(2, [b"a"])]
    hub.remove(second)
    assert len(hub) == 0
    hub.publish(3, [put(b"a", 3)])
    assert second.received == [(2, [b"a"])]


def test_watcher_removed_during_publication_is_skipped() -> None:
    hub = WatchHub(1)
    victim = Recorder()

    @implementer(IWatcher)
    class Remover(Recorder):
        def publish(self, revision: int, events: Sequence[Event]) -> None:
            super().publish(revision, events)
            hub.remove(victim)

    remover = Remover()
    hub.add(remover, KeyRange.one(b"k"))
    hub.add(victim, KeyRange.one(b"k"))
    hub.publish(2, [put(b"k", 2)])
    assert remover.received == [(2, [b"k"])]
    assert victim.received == []


def test_watcher_added_during_publication_gets_that_revision() -> None:
    """A watcher joining while revision r is handed out (hub.revision is still r-1) gets r."""
    hub = WatchHub(1)
    late = Recorder()
    seen_revision = []

    @implementer(IWatcher)
    class Adder(Recorder):
        def publish(self, revision: int, events: Sequence[Event]) -> None:
            super().publish(revision, events)
            seen_revision.append(hub.revision)
            hub.add(late, KeyRange(b"k", None))

    hub.add(Adder(), KeyRange.one(b"k"))
    hub.publish(2, [put(b"k", 2), put(b"z", 2), put(b"a", 2)])
    assert seen_revision == [1]
    assert late.received == [(2, [b"k", b"z"])]
    hub.publish(3, [put(b"k", 3)])
    assert late.received == [(2, [b"k", b"z"]), (3, [b"k"])]


def test_a_failing_watcher_does_not_cost_others_their_events() -> None:
    hub = WatchHub(1)

    @implementer(IWatcher)
    class Broken(Recorder):
        def publish(self, revision: int, events: Sequence[Event]) -> None:
            raise RuntimeError("broken watcher")

    logged: list[dict] = []
    hub.log = Logger(observer=logged.append)
    healthy = Recorder()
    hub.add(Broken(), KeyRange.one(b"k"))
    hub.add(healthy, KeyRange.one(b"k"))
    hub.publish(2, [put(b"k", 2)])
    assert healthy.received == [(2, [b"k"])]
    assert hub.revision == 2
    assert [event["log_failure"].type for event in logged] == [RuntimeError]


def test_resync_tells_every_watcher() -> None:
    hub = WatchHub(0)
    watchers = [Recorder(), Recorder()]
    hub.add(watchers[0], KeyRange.one(b"a"))
    hub.add(watchers[1], KeyRange(b"b", None))
    hub.resync(7)
    assert hub.revision == 7
    assert [watcher.resyncs for watcher in watchers] == [[7], [7]]


def test_reached_fires_once_the_revision_is_handed_out() -> None:
    hub = WatchHub(1)
    fired: list[tuple[str, int]] = []
    hub.reached(1).addCallback(lambda revision: fired.append(("now", revision)))
    hub.reached(3).addCallback(lambda revision: fired.append(("three", revision)))
    hub.reached(2).addCallback(lambda revision: fired.append(("two", revision)))
    cancelled = hub.reached(3)
    cancelled.addErrback(lambda reason: None)
    cancelled.cancel()
    assert fired == [("now", 1)]
    hub.publish(2, [put(b"k", 2)])
    assert fired == [("now", 1), ("two", 2)]
    hub.resync(5)
    assert fired == [("now", 1), ("two", 2), ("three", 5)]
