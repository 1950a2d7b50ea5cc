"""Catch-up reads of the log, shared by the watches that fall behind together.

When a stream's client reads slower than events come, every watch of the stream that
receives one leaves the hub at the same revision; once the client has read enough they all
resume in the same reactor turn and ask the log for the same revisions.  ``SharedReads``
answers identical reads in flight with one query and hands every reader the same events,
so that a stream of N such watches costs one query (and, downstream, one encoding per
event) instead of N.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import implementer

from k8s_sql.store.interfaces import IChangeLog
from k8s_sql.store.model import Event
from k8s_sql.watch.hub import IWatchHub


@implementer(IChangeLog)
class SharedReads:
    """An ``IChangeLog`` whose ``changes`` shares identical reads in flight.

    A read is shared only while the hub is at the revision it was at when the read was
    sent: a reader may then rely on everything the hub has published having been committed
    before the read began, as with a read of its own.

    @param log: the log read.
    @param hub: the hub whose revision qualifies a read.
    """

    def __init__(self, log: IChangeLog, hub: IWatchHub) -> None:
        self._log = log
        self._hub = hub
        self._pending: dict[tuple[int, int, bool, int], list[Deferred[Sequence[Event]]]] = {}

    def current_revision(self) -> Deferred[int]:
        """The log's newest committed revision."""
        return self._log.current_revision()

    def compact_revision(self) -> Deferred[int]:
        """The log's last compaction revision."""
        return self._log.compact_revision()

    def notify_commits(self, observer: Callable[[int | None], None]) -> Callable[[], object]:
        """Commit signals of the log."""
        return self._log.notify_commits(observer)

    def changes(self, after: int, limit: int, from_compaction: bool = False) -> Deferred[Sequence[Event]]:
        """The events after ``after``, from a read in flight if one asked the same.

        Every reader of a shared read gets the same sequence: it must not be changed.
        Cancelling a reader's Deferred lets go of that reader only.
        """
        key = (after, limit, from_compaction, self._hub.revision)
        readers = self._pending.get(key)
        first = readers is None
        if readers is None:
            readers = self._pending[key] = []
        reader: Deferred[Sequence[Event]] = Deferred(readers.remove)
        readers.append(reader)
        if first:
            self._log.changes(after, limit, from_compaction).addBoth(self._answer, key)
        return reader

    def _answer(self, result: Sequence[Event] | Failure, key: tuple[int, int, bool, int]) -> None:
        # A reader's callback may cancel readers after it (its stream ended).
        for reader in list(self._pending.pop(key)):
            if reader.called:
                continue
            if isinstance(result, Failure):
                reader.errback(result)
            else:
                reader.callback(result)
