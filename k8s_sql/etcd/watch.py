"""The etcd ``Watch`` service: one bidirectional stream carries many watches.

Each watch on a stream is a ``Feed`` (``k8s_sql.watch.feed``): replayed from the log, then
live from the hub.  All of a stream's responses go through one ``Outbox`` bounded in bytes,
in the order they were produced, so a watch's ``created`` response precedes its events and
a progress notification follows every event it vouches for.  etcd 3.5/3.6 behaviour kept
here (read in etcd's ``v3rpc/watch.go`` and ``mvcc/watcher.go``, and compared with a real
etcd by ``tests/watch/test_etcd_differential.py``):

- watch ids: 0 asks the stream to pick one, as etcd's ``watchStream.Watch`` does: a
  per-stream counter, starting at 0, that skips ids in use and never goes back;
- a refused create (empty range, duplicate id, negative start revision) is answered with
  ``created`` and ``canceled`` both set, ``watch_id`` -1 and etcd's reason text;
- a cancel of an unknown id is ignored;
- ``fragment`` splits a response at etcd's ``--max-request-bytes`` plus gRPC overhead,
  exactly as etcd's ``sendFragments``;
- progress on request (``WatchProgressRequest``): one response with ``watch_id`` -1, sent
  once every watch of the stream is caught up, as etcd >= 3.5.13 defers it; requests
  arriving while one is pending are folded into it.  A stream without watches gets none.
- periodic progress (``progress_notify``): every ``progress_interval`` seconds to each
  watch that asked, is caught up, and had no event since the previous tick.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from zope.interface import implementer

from k8s_sql.etcd import encode
from k8s_sql.etcd.encode import EncodedEvents
from k8s_sql.etcd.errors import COMPACTED
from k8s_sql.etcd.header import Identity
from k8s_sql.grpc.interfaces import IServerCall
from k8s_sql.proto import rpc_pb2
from k8s_sql.store.interfaces import IChangeLog
from k8s_sql.store.keys import KeyRange
from k8s_sql.store.model import EventType
from k8s_sql.watch.feed import ALL_EVENTS, Feed, IFeedConsumer, Revisions
from k8s_sql.watch.follower import IFollower
from k8s_sql.watch.hub import IWatchHub
from k8s_sql.watch.outbox import Outbox
from k8s_sql.watch.reads import SharedReads

#: etcd's ``clientv3.InvalidWatchID``: refused creates and stream-wide progress carry it.
INVALID_WATCH_ID = -1
#: etcd's ``mvcc.ErrEmptyWatcherRange`` text.
EMPTY_RANGE = "mvcc: watcher range is empty"
#: etcd's ``mvcc.ErrWatcherDuplicateID`` text.
DUPLICATE_ID = "mvcc: duplicate watch ID provided on the WatchStream"

#: etcd's default ``--watch-progress-notify-interval``.
DEFAULT_PROGRESS_INTERVAL = 600.0
#: etcd's ``MaxRequestBytesWithOverhead``: 1.5 MiB plus 512 KiB of gRPC overhead.
DEFAULT_MAX_RESPONSE_BYTES = 1536 * 1024 + 512 * 1024
#: Bytes of responses a stream queues for a client that does not read, before its
#: watches fall behind and catch up from the log later.
DEFAULT_MAX_QUEUE_BYTES = 4 * 1024 * 1024

_FILTERED = {
    rpc_pb2.WatchCreateRequest.NOPUT: EventType.PUT,
    rpc_pb2.WatchCreateRequest.NODELETE: EventType.DELETE,
}


class WatchService:
    """Serves ``etcdserverpb.Watch``.

    @param hub: the live flow of revisions.
    @param store: the log, for replays and the current revision.
    @param follower: poked on progress requests, so the hub catches up at once.
    @param identity: the cluster and member ids of every response header.
    @param clock: schedules periodic progress notifications.
    @param progress_interval: seconds between progress notifications to watches that asked.
    @param max_queue_bytes: bytes queued per stream before its watches fall behind.
    @param max_response_bytes: the size at which catch-up responses are cut between
        revisions and, for watches that allow it, responses are fragmented.
    @param batch_size: events read from the log at most per query while catching up.
    @param encoded: the shared cache of encoded events.
    """

    descriptor = rpc_pb2.DESCRIPTOR.services_by_name["Watch"]

    def __init__(
        self,
        hub: IWatchHub,
        store: IChangeLog,
        follower: IFollower,
        identity: Identity,
        clock: IReactorTime,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        batch_size: int = 1000,
        encoded: EncodedEvents | None = None,
    ) -> None:
        self.hub = hub
        self.store = store
        self.follower = follower
        self.identity = identity
        self.clock = clock
        self.progress_interval = progress_interval
        self.max_queue_bytes = max_queue_bytes
        self.max_response_bytes = max_response_bytes
        self.batch_size = batch_size
        self.encoded = encoded if encoded is not None else EncodedEvents()
        #: What watches replay from: catch-up reads shared between them.
        self.replays = SharedReads(store, hub)
        self._header = (0, b"")

    def event_head(self, revision: int, watch_id: int, fragment: bool = False) -> bytes:
        """The fields of an event response that precede its events, as protobuf encodes
        them: the header reporting ``revision``, ``watch_id`` and the fragment flag.

        The header of the latest revision is kept: live, every watch it reaches gets one.
        """
        cached, field = self._header
        if revision != cached:
            field = encode.header_field(self.identity, revision)
            self._header = (revision, field)
        field += encode.watch_id_field(watch_id)
        if fragment:
            field += encode.FRAGMENT_FIELD
        return field

    async def watch(self, call: IServerCall) -> None:
        """Serve one Watch stream until the client goes away or something fails."""
        await WatchStream(self, call).run()


@implementer(IFeedConsumer)
class _Watch:
    """One watch of a stream: its options, its feed and what it has been sent."""

    def __init__(
        self,
        stream: WatchStream,
        watch_id: int,
        created_revision: int,
        request: rpc_pb2.WatchCreateRequest,
    ) -> None:
        self.stream = stream
        self.id = watch_id
        self.created_revision = created_revision
        self.prev_kv = request.prev_kv
        self.fragment = request.fragment
        self.progress_notify = request.progress_notify
        #: The newest revision whose events were queued for the client.
        self.sent_revision = 0
        #: No event was queued since the last progress tick.
        self.idle = True
        self.feed: Feed

    @property
    def live(self) -> bool:
        """Whether the watch follows the hub (it is not replaying the log)."""
        return self.feed.live

    def has_room(self) -> bool:
        """Whether the stream's outbox takes more events."""
        return self.stream.outbox.has_room()

    def room(self) -> Deferred[None]:
        """Fire once the stream's outbox has drained."""
        return self.stream.outbox.room()

    def deliver(self, revisions: Revisions) -> None:
        """Queue responses with these events."""
        self.stream.send_events(self, revisions)

    def synced(self) -> None:
        """The watch follows the hub now: a pending progress request may be answerable."""
        self.stream.answer_progress()

    def compacted(self, compact_revision: int) -> None:
        """Cancel the watch with ``compact_revision``."""
        self.stream.compacted(self, compact_revision)

    def failed(self, reason: Failure) -> None:
        """End the whole call with ``reason``."""
        self.stream.fail(reason)


class WatchStream:
    """One Watch call: its watches, its outgoing queue and its progress bookkeeping.

    @param service: the configuration and collaborators shared by all streams.
    @param call: the gRPC call served.
    """

    def __init__(self, service: WatchService, call: IServerCall) -> None:
        self.service = service
        self.call = call
        self.outbox = Outbox(call.send, self.fail, service.max_queue_bytes)
        self.watches: dict[int, _Watch] = {}
        self._next_id = 0
        self._known_revision = 0
        self._progress_wanted = False
        self._progress_syncing: Deferred[None] | None = None
        self._progress_reaching: Deferred[int] | None = None
        self._ended: Deferred[None] = Deferred()
        self._closed = False

    async def run(self) -> None:
        """Serve the call; returns only by failing, or by cancellation when the call ends."""
        reading = ensureDeferred(self._read_all())
        reading.addErrback(self.fail)
        ticker = LoopingCall(self._tick)
        ticker.clock = self.service.clock
        ticker.start(self.service.progress_interval, now=False)
        try:
            await self._ended
        finally:
            self._closed = True
            ticker.stop()
            self.outbox.close()
            # Reading further up the stack (when its own callback ended the call), it
            # cannot be cancelled: it stops when it sees ``_closed``.
            reading.cancel()
            for pending in (self._progress_syncing, self._progress_reaching):
                if pending is not None:
                    pending.addErrback(lambda reason: reason.trap(CancelledError))
                    pending.cancel()
            for watch in list(self.watches.values()):
                watch.feed.stop()
            self.watches.clear()

    def fail(self, reason: Failure) -> None:
        """End the call with ``reason`` (registration puts store failures in etcd's words)."""
        if self._ended.called or self._closed:
            return
        self._ended.errback(reason)

    async def _read_all(self) -> None:
        # A half-close ends this loop, not the call: watches keep running.
        while not self._closed:
            request = await self.call.receive()
            if request is None:
                return
            if not self.outbox.has_room():
                await self.outbox.room()
            kind = request.WhichOneof("request_union")
            if kind == "create_request":
                await self._create(request.create_request)
            elif kind == "cancel_request":
                self._cancel(request.cancel_request.watch_id)
            elif kind == "progress_request":
                self._request_progress()

    # -- responses

    def _current(self) -> int:
        """A revision for control responses: none older than one already reported."""
        return max(self.service.hub.revision, self._known_revision)

    def _head(self, revision: int, watch_id: int, **fields: Any) -> bytes:
        response = rpc_pb2.WatchResponse(header=self.service.identity.header(revision), watch_id=watch_id, **fields)
        return response.SerializeToString()

    def send_events(self, watch: _Watch, revisions: Revisions) -> None:
        """Queue responses carrying ``revisions`` for ``watch``, never splitting a revision
        between responses (unless the watch allows fragments)."""
        limit = self.service.max_response_bytes
        encoded = self.service.encoded
        body: list[bytes] = []
        size = 0
        last = 0
        for revision, events in revisions:
            fields = [encoded.field(event, watch.prev_kv) for event in events]
            added = sum(map(len, fields))
            if body and size + added > limit:
                self._queue_events(watch, last, body)
                body, size = [], 0
            body.extend(fields)
            size += added
            last = revision
        self._queue_events(watch, last, body)
        watch.sent_revision = last
        watch.idle = False

    def _queue_events(self, watch: _Watch, revision: int, fields: list[bytes]) -> None:
        # etcd reports the store's revision when the response was made, never older
        # than the one the watch was created at.
        header = max(revision, watch.created_revision)
        limit = self.service.max_response_bytes
        head = self.service.event_head(header, watch.id)
        if not watch.fragment or len(fields) < 2 or len(head) + sum(map(len, fields)) < limit:
            self.outbox.put(head + b"".join(fields))
            return
        marked = self.service.event_head(header, watch.id, fragment=True)
        for fragment in encode.fragments(head, marked, fields, limit):
            self.outbox.put(fragment)

    # -- requests

    async def _create(self, request: rpc_pb2.WatchCreateRequest) -> None:
        current = await self.service.store.current_revision()
        self._known_revision = max(self._known_revision, current)
        # An empty key is the lowest key there is, as in etcd's watch.
        key_range = KeyRange.of(request.key or b"\0", request.range_end)
        if request.start_revision < 0:
            self._refuse(current, COMPACTED.message)
            return
        if key_range.empty:
            self._refuse(current, EMPTY_RANGE)
            return
        watch_id = request.watch_id
        if watch_id == 0:
            while self._next_id in self.watches:
                self._next_id += 1
            watch_id = self._next_id
            self._next_id += 1
        elif watch_id in self.watches:
            self._refuse(current, DUPLICATE_ID)
            return
        watch = _Watch(self, watch_id, current, request)
        types = ALL_EVENTS - {_FILTERED[kind] for kind in request.filters if kind in _FILTERED}
        watch.feed = Feed(
            self.service.hub,
            self.service.replays,
            key_range,
            request.start_revision or current + 1,
            watch,
            types=types,
            batch_size=self.service.batch_size,
            floor=current,
        )
        self.watches[watch_id] = watch
        self.outbox.put(self._head(current, watch_id, created=True))
        watch.feed.start()

    def _refuse(self, revision: int, reason: str) -> None:
        self.outbox.put(self._head(revision, INVALID_WATCH_ID, created=True, canceled=True, cancel_reason=reason))

    def _cancel(self, watch_id: int) -> None:
        watch = self.watches.pop(watch_id, None)
        if watch is None:
            return
        watch.feed.stop()
        self.outbox.put(self._head(self._current(), watch_id, canceled=True))
        self.answer_progress()

    def compacted(self, watch: _Watch, compact_revision: int) -> None:
        """Cancel ``watch``: the revisions it needs are gone."""
        if self.watches.get(watch.id) is not watch:
            return
        del self.watches[watch.id]
        self.outbox.put(self._head(self._current(), watch.id, compact_revision=compact_revision, canceled=True))
        self.answer_progress()

    # -- progress

    def _caught_up(self, watch: _Watch, revision: int) -> bool:
        """Whether ``watch`` has been sent everything up to ``revision``, and nothing newer."""
        return watch.live and revision >= max(watch.created_revision, watch.sent_revision)

    def _tick(self) -> None:
        revision = self.service.hub.revision
        for watch in self.watches.values():
            if watch.progress_notify:
                if watch.idle and self._caught_up(watch, revision):
                    self.outbox.put(self._head(revision, watch.id))
                watch.idle = True

    def _request_progress(self) -> None:
        if self._progress_syncing is None:
            self._progress_wanted = True
            self._progress_syncing = self.service.follower.sync()
            self._progress_syncing.addCallback(self._synced)
        else:
            self.service.follower.poke()

    def _synced(self, _: None) -> None:
        self._progress_syncing = None
        self.answer_progress()

    def _reached(self, _: int) -> None:
        self._progress_reaching = None
        self.answer_progress()

    def answer_progress(self) -> None:
        """Send the progress a client asked for, if every watch is caught up to the hub.

        Otherwise the answer waits: for a watch still replaying the log to join the hub
        (it calls here then), or for the hub to reach what some watch was already sent.
        """
        if not self._progress_wanted or self._progress_syncing is not None:
            return
        if not self.watches:
            self._progress_wanted = False
            return
        target = 1
        for watch in self.watches.values():
            if not watch.live:
                return
            target = max(target, watch.created_revision, watch.sent_revision)
        revision = self.service.hub.revision
        if revision < target:
            if self._progress_reaching is None:
                self._progress_reaching = self.service.hub.reached(target)
                self._progress_reaching.addCallback(self._reached)
            return
        self._progress_wanted = False
        self.outbox.put(self._head(revision, INVALID_WATCH_ID))
