"""One watcher's supply of events: replayed from the log, then live from the hub.

A feed starts at a revision.  While that revision is behind the hub, it reads the log
(``IChangeLog.changes``), keeps the events in its key range and hands them to its consumer,
several revisions at a time; once it has read up to the hub's revision it registers with
the hub, in the same reactor turn, so it joins the live flow with no gap and no duplicate.

When its consumer has no room (the client stopped reading), a live feed leaves the hub
rather than queue more, and later catches up from the log the same way.  Should the log
have been compacted past the revision it needs, the feed stops and says so.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from k8s_sql.store.errors import Compacted
from k8s_sql.store.interfaces import IChangeLog
from k8s_sql.store.keys import KeyRange
from k8s_sql.store.model import Event, EventType
from k8s_sql.watch.hub import IWatcher, IWatchHub

#: Every kind of event; a feed may be limited to some.
ALL_EVENTS = frozenset(EventType)

#: Whole revisions, oldest first: ``(revision, events of that revision)``.
Revisions = Sequence[tuple[int, Sequence[Event]]]


class IFeedConsumer(Interface):
    """Where a feed delivers, typically one watch of a watch stream."""

    def has_room() -> bool:
        """Whether events may be delivered now; if not, the feed falls behind."""

    def room() -> Deferred[None]:
        """Fire once deliveries may resume."""

    def deliver(revisions: Revisions) -> None:
        """Take the events of whole revisions, oldest first, none of them empty.

        A live feed delivers one revision at a time; a feed catching up delivers what one
        read of the log found, possibly many revisions.
        """

    def synced() -> None:
        """The feed has read everything up to the hub's revision and now follows the hub."""

    def compacted(compact_revision: int) -> None:
        """The revisions the feed needed were compacted away; the feed has stopped."""

    def failed(reason: Failure) -> None:
        """Reading the log failed; the feed has stopped."""


@implementer(IWatcher)
class Feed:
    """Events of one key range from a start revision on, for one consumer.

    @param hub: the live flow to join.
    @param store: the log to replay from.
    @param key_range: the keys watched.
    @param start: the first revision wanted (revisions before it are never delivered).
    @param consumer: where events go.
    @param types: the kinds of event delivered; others are skipped.
    @param batch_size: events read from the log at most per query.
    @param floor: a revision committed before the feed was made (the store's current one):
        revisions up to it are read from the log even if the hub has not published them
        yet, so that they are what the log holds now, after any compaction since (a hub
        that lags may still hand out a revision read before it was compacted).
    """

    def __init__(
        self,
        hub: IWatchHub,
        store: IChangeLog,
        key_range: KeyRange,
        start: int,
        consumer: IFeedConsumer,
        types: frozenset[EventType] = ALL_EVENTS,
        batch_size: int = 1000,
        floor: int = 0,
    ) -> None:
        self._hub = hub
        self._store = store
        self._range = key_range
        self._consumer = consumer
        self._types = types
        self._batch_size = batch_size
        self._floor = floor
        #: Every revision up to this one has been delivered or skipped.
        self.position = max(start, 1) - 1
        self.live = False
        self._stopped = False
        self._reading: Deferred[None] | None = None

    def start(self) -> None:
        """Begin: replay from the log what the hub has already published, then follow it."""
        self._catch_up()

    def stop(self) -> None:
        """Deliver nothing more and let go of the hub and of any read in flight.

        Safe to call from anywhere, even from a callback the feed's own replay set off: a
        replay running further up the stack cannot be cancelled, and stops when it sees
        that it was stopped.
        """
        self._stopped = True
        if self.live:
            self._hub.remove(self)
            self.live = False
        reading, self._reading = self._reading, None
        if reading is not None:
            reading.cancel()

    def publish(self, revision: int, events: Sequence[Event]) -> None:
        """Take one live revision from the hub."""
        if revision <= self.position:
            return
        selected = self._select(events)
        if selected and not self._consumer.has_room():
            self._hub.remove(self)
            self.live = False
            self._catch_up()
            return
        self.position = revision
        if selected:
            self._consumer.deliver(((revision, selected),))

    def resync(self, revision: int) -> None:
        """The hub skipped to ``revision``: read what is missing from the log."""
        if self.live and self.position < revision:
            self._hub.remove(self)
            self.live = False
            self._catch_up()

    def _select(self, events: Sequence[Event]) -> Sequence[Event]:
        if len(self._types) == len(ALL_EVENTS):
            return events
        return [event for event in events if event.type in self._types]

    def _catch_up(self) -> None:
        reading = ensureDeferred(self._read_log())
        reading.addCallbacks(self._joined, self._read_failed)
        if not reading.called:
            self._reading = reading

    async def _read_log(self) -> None:
        """Read the log until level with the hub, then join it."""
        while not self._stopped:
            if not self._consumer.has_room():
                await self._consumer.room()
                continue
            horizon = max(self._hub.revision, self._floor)
            if self.position >= horizon:
                # Same reactor turn as the check: no revision can slip in between.
                self._hub.add(self, self._range)
                self.live = True
                return
            events = await self._store.changes(self.position, self._batch_size, from_compaction=True)
            revisions: list[tuple[int, list[Event]]] = []
            for event in events:
                if event.kv.key in self._range and event.type in self._types:
                    revision = event.kv.mod_revision
                    if revisions and revisions[-1][0] == revision:
                        revisions[-1][1].append(event)
                    else:
                        revisions.append((revision, [event]))
            if revisions:
                # Other feeds of the consumer may have filled it meanwhile (all the watches
                # of a stream read at once when its client resumes): one batch each at most.
                while not self._consumer.has_room():
                    await self._consumer.room()
                if self._stopped:
                    return
                self._consumer.deliver(revisions)
            # An empty answer means nothing is committed after our position, and the
            # horizon was committed before the read: both say we are level with it.
            self.position = events[-1].kv.mod_revision if events else max(self.position, horizon)

    def _joined(self, _: None) -> None:
        self._reading = None
        if not self._stopped:
            self._consumer.synced()

    def _read_failed(self, reason: Failure) -> None:
        self._reading = None
        if reason.check(CancelledError) or self._stopped:
            return
        self._stopped = True
        if isinstance(reason.value, Compacted):
            self._consumer.compacted(reason.value.compact_revision)
        else:
            self._consumer.failed(reason)
