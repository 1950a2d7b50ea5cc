"""The follower, feeds and watch streams over the real SQL store, on every backend.

Everything runs in the reactor thread (the ``run`` fixture); waiting is done on the hub's
``reached`` or by polling a condition on the reactor, never by sleeping in the test thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import ensureDeferred
from twisted.internet.task import deferLater
from zope.interface import implementer
from zope.interface.verify import verifyObject

from k8s_sql.etcd.header import Identity
from k8s_sql.etcd.watch import WatchService, WatchStream
from k8s_sql.proto import kv_pb2
from k8s_sql.store import open_store
from k8s_sql.store.interfaces import IChangeLog
from k8s_sql.store.keys import KeyRange
from k8s_sql.store.model import DeleteRangeRequest, Event, EventType, PutRequest, TxnRequest
from k8s_sql.watch.follower import Follower
from k8s_sql.watch.hub import IWatcher, WatchHub
from tests.watch.doubles import FakeCall

Run = Callable[..., Any]


@implementer(IWatcher)
class Recorder:
    def __init__(self) -> None:
        self.received: list[tuple[int, list[tuple[EventType, bytes, bytes | None]]]] = []

    def publish(self, revision: int, events: Sequence[Event]) -> None:
        self.received.append(
            (revision, [(e.type, e.kv.key, e.prev_kv.value if e.prev_kv else None) for e in events])
        )

    def resync(self, revision: int) -> None:
        raise AssertionError(f"unexpected resync to {revision}")


async def until(reactor: Any, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait on the reactor until ``condition()`` holds."""
    waited = 0.0
    while not condition():
        assert waited < timeout, "condition not met in time"
        await deferLater(reactor, 0.01, lambda: None)
        waited += 0.01


def test_the_store_provides_the_change_log(store: Any) -> None:
    verifyObject(IChangeLog, store)


def test_the_follower_publishes_local_commits_in_order(run: Run, reactor: Any, store: Any) -> None:
    async def scenario() -> list[Any]:
        hub = WatchHub()
        follower = Follower(store, hub, reactor)
        follower.startService()
        try:
            await hub.reached(1)
            watcher = Recorder()
            hub.add(watcher, KeyRange(b"\x00", None))
            await store.put(PutRequest(b"a", b"1"))
            await store.txn(TxnRequest(success=(PutRequest(b"b", b"1"), PutRequest(b"a", b"2"))))
            await store.delete_range(DeleteRangeRequest(b"a"))
            await hub.reached(4)
            return watcher.received
        finally:
            follower.stopService()

    assert run(scenario) == [
        (2, [(EventType.PUT, b"a", None)]),
        (3, [(EventType.PUT, b"b", None), (EventType.PUT, b"a", b"1")]),
        (4, [(EventType.DELETE, b"a", b"2")]),
    ]


def test_commits_by_another_server_reach_the_follower(run: Run, reactor: Any, store: Any, backend: str) -> None:
    """PostgreSQL pushes them (no polling needed); the others are found by polling."""
    pushes = backend.startswith("postgres")

    async def scenario() -> list[Any]:
        watching = await open_store(backend, reactor, poll_interval=None if pushes else 0.05)
        hub = WatchHub()
        follower = Follower(watching, hub, reactor)
        follower.startService()
        try:
            await hub.reached(1)
            watcher = Recorder()
            hub.add(watcher, KeyRange.one(b"k"))
            for value in (b"1", b"2", b"3"):
                await store.put(PutRequest(b"k", value))
            await hub.reached(4)
            return watcher.received
        finally:
            follower.stopService()
            await watching.close()

    received = run(scenario)
    assert [revision for revision, _ in received] == [2, 3, 4]
    assert received[-1] == (4, [(EventType.PUT, b"k", b"2")])


def test_a_watch_stream_replays_then_follows_and_reports_compaction(run: Run, reactor: Any, store: Any) -> None:
    async def scenario() -> tuple[list[Any], list[Any]]:
        hub = WatchHub()
        follower = Follower(store, hub, reactor)
        follower.startService()
        service = WatchService(hub, store, follower, Identity(store.cluster_id, 1), reactor, batch_size=2)
        await hub.reached(1)
        for number in range(5):
            await store.put(PutRequest(b"/p/%d" % (number % 2), b"%d" % number))
        call = FakeCall()
        stream = ensureDeferred(WatchStream(service, call).run())
        try:
            call.create(b"/p/", range_end=b"/p0", start_revision=3, prev_kv=True)
            await until(reactor, lambda: len(hub) == 1)
            await store.delete_range(DeleteRangeRequest(b"/p/", b"/p0"))
            await until(reactor, lambda: any(e.kv.mod_revision == 7 for r in call.sent for e in r.events))
            replayed = [
                (e.type, e.kv.key, e.kv.mod_revision, e.prev_kv.value) for r in call.take() for e in r.events
            ]
            await store.compact(7, False)
            call.create(b"/p/", range_end=b"/p0", start_revision=2)
            await until(reactor, lambda: any(r.compact_revision for r in call.sent))
            return replayed, call.take()
        finally:
            stream.cancel()
            stream.addErrback(lambda _: None)
            follower.stopService()

    replayed, compacted = run(scenario)
    assert replayed == [
        (kv_pb2.Event.PUT, b"/p/1", 3, b""),
        (kv_pb2.Event.PUT, b"/p/0", 4, b"0"),
        (kv_pb2.Event.PUT, b"/p/1", 5, b"1"),
        (kv_pb2.Event.PUT, b"/p/0", 6, b"2"),
        (kv_pb2.Event.DELETE, b"/p/0", 7, b"4"),
        (kv_pb2.Event.DELETE, b"/p/1", 7, b"3"),
    ]
    created, cancelled = compacted
    assert created.created and cancelled.canceled and cancelled.compact_revision == 7
