"""Test doubles for the watch tests: an in-memory change log and a gRPC server call.

``MemoryLog`` keeps the ``IChangeLog`` contract (revisions from 1, whole revisions per
read, ``Compacted`` below the compact revision, commit notices) over a list of events the
test writes.  ``FakeCall`` is a Watch call driven by the test: it queues requests, decodes
what the handler sends, and can stop "reading" so that ``send`` Deferreds stay unfired,
as they do for a client that stopped reading.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, fail, succeed
from twisted.internet.task import Clock
from zope.interface import implementer

from k8s_sql.grpc.interfaces import IServerCall
from k8s_sql.proto import rpc_pb2
from k8s_sql.store.errors import Compacted, Unavailable
from k8s_sql.store.interfaces import IChangeLog
from k8s_sql.store.model import Event, EventType, KeyValue
from k8s_sql.store.signals import CommitSignals


@implementer(IChangeLog)
class MemoryLog:
    """A revision log in memory.

    @param manual: when true, ``changes`` answers only when the test calls ``answer``,
        with what the log holds then (a read in flight sees later commits, as a database
        read may).
    @param poll_interval: how often its commit signals poll, on ``clock`` (``None``: never).
    """

    def __init__(self, manual: bool = False, poll_interval: float | None = None) -> None:
        self.manual = manual
        self.clock = Clock()
        #: Commit signals, as a store has: writes signal them, and they may poll.
        self.signals = CommitSignals(self.clock, poll_interval)
        ensureDeferred(self.signals.start())
        self.revision = 1
        self.compacted_to = 0
        self.events: list[Event] = []
        self.live: dict[bytes, KeyValue] = {}
        self.reads: list[tuple[int, int]] = []
        self.pending: list[tuple[int, int, Deferred[list[Event]]]] = []
        self.failures: list[Exception] = []
        #: While true, every call fails as with an unreachable database.
        self.down = False

    # -- writing, as the store's write path would

    def write(self, *changes: tuple[bytes, bytes | None], notify: bool = True) -> int:
        """Commit one revision: ``(key, value)`` puts, ``(key, None)`` deletes."""
        self.revision += 1
        revision = self.revision
        for key, value in changes:
            previous = self.live.get(key)
            if value is None:
                assert previous is not None, key
                del self.live[key]
                self.events.append(Event(EventType.DELETE, KeyValue(key, mod_revision=revision), previous))
            else:
                kv = KeyValue(
                    key,
                    create_revision=previous.create_revision if previous else revision,
                    mod_revision=revision,
                    version=previous.version + 1 if previous else 1,
                    value=value,
                )
                self.live[key] = kv
                self.events.append(Event(EventType.PUT, kv, previous))
        if notify:
            self.signals.committed(revision)
        return revision

    def compact(self, revision: int) -> None:
        """Forget the events below ``revision``; reads give what etcd keeps of ``revision`` itself."""
        self.compacted_to = revision
        self.events = [event for event in self.events if event.kv.mod_revision >= revision]

    # -- IChangeLog

    def current_revision(self) -> Deferred[int]:
        if self.down:
            return fail(Unavailable("database unreachable"))
        return succeed(self.revision)

    def compact_revision(self) -> Deferred[int]:
        if self.down:
            return fail(Unavailable("database unreachable"))
        return succeed(self.compacted_to)

    def changes(self, after: int, limit: int, from_compaction: bool = False) -> Deferred[list[Event]]:
        self.reads.append((after, limit))
        if self.manual:
            waiter: Deferred[list[Event]] = Deferred()
            self.pending.append((after, limit, from_compaction, waiter))
            return waiter
        return self._answer(after, limit, from_compaction)

    def notify_commits(self, observer: Callable[[int | None], None]) -> Callable[[], None]:
        return self.signals.subscribe(observer)

    # -- test controls

    def answer(self) -> None:
        """Answer the oldest read in flight."""
        after, limit, from_compaction, waiter = self.pending.pop(0)
        self._answer(after, limit, from_compaction).chainDeferred(waiter)

    def _answer(self, after: int, limit: int, from_compaction: bool) -> Deferred[list[Event]]:
        if self.down:
            return fail(Unavailable("database unreachable"))
        if self.failures:
            return fail(self.failures.pop(0))
        if after < self.compacted_to - from_compaction:
            return fail(Compacted(self.compacted_to))
        found: list[Event] = []
        for event in self.events:
            if event.kv.mod_revision <= after:
                continue
            if event.kv.mod_revision <= self.compacted_to:
                # What etcd keeps of the compaction revision: its puts, without prev_kv.
                if event.type is EventType.DELETE:
                    continue
                event = dataclasses.replace(event, prev_kv=None)
            if len(found) >= limit and found[-1].kv.mod_revision != event.kv.mod_revision:
                break
            found.append(event)
        return succeed(found)

    def fail_next_read(self, error: Exception | None = None) -> None:
        """Make the next read fail (with ``Unavailable`` by default)."""
        self.failures.append(error or Unavailable("database unreachable"))


@implementer(IServerCall)
class FakeCall:
    """One Watch call as the handler sees it, driven by the test."""

    method = "/etcdserverpb.Watch/Watch"
    metadata: tuple[tuple[str, str | bytes], ...] = ()
    peer = IPv4Address("TCP", "127.0.0.1", 40000)
    deadline = None

    def __init__(self) -> None:
        self.requests: list[rpc_pb2.WatchRequest | None] = []
        self.receiving: Deferred[rpc_pb2.WatchRequest | None] | None = None
        self.sent: list[rpc_pb2.WatchResponse] = []
        self.sent_bytes = 0
        self.reading = True
        self.unacknowledged: list[Deferred[None]] = []
        self.trailers: list[tuple[str, str]] = []
        #: Set once the call ended: like the real call, it then refuses to be used.
        self.ended = False
        #: How often the handler tried to receive or send after the call ended.
        self.used_after_end = 0
        #: Called inside ``send``, after the message is taken (to end the call there).
        self.on_send: Callable[[], None] | None = None

    def receive(self) -> Deferred[rpc_pb2.WatchRequest | None]:
        self._check_open()
        if self.requests:
            return succeed(self.requests.pop(0))
        self.receiving = Deferred()
        return self.receiving

    def send(self, message: bytes) -> Deferred[None]:
        self._check_open()
        self.sent.append(rpc_pb2.WatchResponse.FromString(message))
        self.sent_bytes += len(message)
        if self.on_send is not None:
            self.on_send()
        if self.reading:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self.unacknowledged.append(waiter)
        return waiter

    def _check_open(self) -> None:
        if self.ended:
            self.used_after_end += 1
            raise CancelledError("the call has ended")

    def set_trailing_metadata(self, metadata: list[tuple[str, str]]) -> None:
        self.trailers.extend(metadata)

    # -- test controls

    def request(self, request: rpc_pb2.WatchRequest | None) -> None:
        """The client sends ``request`` (``None``: the client half-closes)."""
        receiving, self.receiving = self.receiving, None
        if receiving is not None:
            receiving.callback(request)
        else:
            self.requests.append(request)

    def create(self, key: bytes, range_end: bytes = b"", **options: object) -> None:
        """The client asks for a watch."""
        self.request(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=key, range_end=range_end, **options)))

    def cancel(self, watch_id: int) -> None:
        """The client cancels a watch."""
        self.request(rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=watch_id)))

    def progress(self) -> None:
        """The client asks for a progress notification."""
        self.request(rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest()))

    def stop_reading(self) -> None:
        """The client stops reading: sends no longer complete."""
        self.reading = False

    def resume_reading(self) -> None:
        """The client reads again: everything pending completes, and so will later sends."""
        self.reading = True
        while self.unacknowledged:
            self.unacknowledged.pop(0).callback(None)

    def take(self) -> list[rpc_pb2.WatchResponse]:
        """The responses sent since the last ``take``."""
        sent, self.sent = self.sent, []
        return sent
