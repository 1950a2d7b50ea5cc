"""The follower: tails the committed revision log, in order, and feeds the watch hub.

Every commit signal of the store pokes the follower (``IChangeLog.notify_commits``: local
commits at once, commits the database pushes, and polls for the rest; see
``k8s_sql.store.signals``).  Pokes coalesce: one read of the log is in flight at a time,
and however many pokes arrive meanwhile, they cause at most one more, and none when each
names a revision that the reads under way were asked for before they began (a commit is
visible before it is signalled, so those reads see it): the same commit signalled twice,
by a peer and by PostgreSQL's NOTIFY, costs one read.  A failed read is logged and retried;
it never stops the follower.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import groupby

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import Interface, implementer

from k8s_sql.store.errors import Compacted, Unavailable
from k8s_sql.store.interfaces import IChangeLog
from k8s_sql.watch.hub import IWatchHub

#: Events read from the log at most per query (the store never splits a revision).
DEFAULT_BATCH_SIZE = 1000
#: Seconds before a failed read of the log is tried again.
DEFAULT_RETRY_INTERVAL = 1.0


class IFollower(Interface):
    """What watch streams may ask of the follower."""

    def poke(revision: int | None = None) -> None:
        """Read the log soon: a commit took ``revision`` (``None``: something may be new)."""

    def sync() -> Deferred[None]:
        """Fire once a read of the log that began after this call has reached its end.

        It also fires when that read failed or the follower stopped; callers check the
        hub's revision rather than trust that it advanced.
        """


@implementer(IFollower)
class Follower(Service):
    """Feeds a hub from a store's revision log.

    @param store: the log to tail.
    @param hub: where each revision is published.
    @param clock: schedules retries.
    @param batch_size: events read from the log at most per query.
    @param retry_interval: seconds before a failed read is tried again.
    """

    log = Logger()

    def __init__(
        self,
        store: IChangeLog,
        hub: IWatchHub,
        clock: IReactorTime,
        batch_size: int = DEFAULT_BATCH_SIZE,
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
    ) -> None:
        self._store = store
        self._hub = hub
        self._clock = clock
        self._batch_size = batch_size
        self._retry_interval = retry_interval
        self._unsubscribe: Callable[[], object] | None = None
        self._retry: IDelayedCall | None = None
        self._wanted = False
        #: The newest revision a poke named, and the newest the reads under way will see.
        self._asked = 0
        self._covered = 0
        self._following = False
        self._task: Deferred[None] | None = None
        self._waiting: list[Deferred[None]] = []

    def startService(self) -> None:
        """Subscribe to commit signals and read the log once."""
        super().startService()
        self._unsubscribe = self._store.notify_commits(self.poke)
        self.poke()

    def stopService(self) -> None:
        """Stop reading; pending ``sync`` callers are released."""
        super().stopService()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._task is not None:
            self._task.cancel()
        self._release(self._waiting)
        self._waiting = []

    def poke(self, revision: int | None = None) -> None:
        """Read the log soon, unless ``revision`` has been published already or will be by
        the reads under way."""
        if not self.running:
            return
        if revision is not None:
            if revision <= self._hub.revision or (self._following and revision <= self._covered):
                return
            self._asked = max(self._asked, revision)
        self._wanted = True
        if not self._following:
            self._following = True
            task = ensureDeferred(self._follow())
            if self._following:
                self._task = task

    def sync(self) -> Deferred[None]:
        """Fire once a read of the log begun after this call has reached its end."""
        waiter: Deferred[None] = Deferred()
        if not self.running:
            waiter.callback(None)
            return waiter
        self._waiting.append(waiter)
        self.poke()
        return waiter

    async def _follow(self) -> None:
        """Read the log until no poke is left unanswered; one read in flight at a time."""
        try:
            while self._wanted and self.running:
                self._wanted = False
                self._covered = self._asked
                waiting, self._waiting = self._waiting, []
                try:
                    at_end = await self._read()
                except CancelledError:
                    self._waiting[:0] = waiting
                    return
                except Unavailable:
                    self._retry_later()  # the store reports the outage once
                    at_end = True
                except Exception:
                    self.log.failure(
                        "Reading the revision log failed; retrying in {delay} s", delay=self._retry_interval
                    )
                    self._retry_later()
                    at_end = True
                if at_end:
                    self._release(waiting)
                else:
                    self._waiting[:0] = waiting
                    self._wanted = True
        finally:
            self._following = False
            self._task = None

    async def _read(self) -> bool:
        """Publish the next batch of revisions; whether the log has been read to its end."""
        hub = self._hub
        if hub.revision == 0:
            # A fresh hub starts at the current revision: watchers replay older history
            # from the log themselves.
            hub.resync(await self._store.current_revision())
        try:
            events = await self._store.changes(hub.revision, self._batch_size)
        except Compacted as compacted:
            revision = await self._store.current_revision()
            self.log.warn(
                "The log was compacted to {compacted} before revisions after {revision} were "
                "read; watchers still needing them are cancelled",
                compacted=compacted.compact_revision,
                revision=hub.revision,
            )
            hub.resync(revision)
            return False
        for revision, group in groupby(events, key=lambda event: event.kv.mod_revision):
            if not self.running:
                break
            hub.publish(revision, list(group))
        return len(events) < self._batch_size

    def _retry_later(self) -> None:
        if self._retry is None or not self._retry.active():
            self._retry = self._clock.callLater(self._retry_interval, self.poke)

    @staticmethod
    def _release(waiting: list[Deferred[None]]) -> None:
        for waiter in waiting:
            if not waiter.called:
                waiter.callback(None)
