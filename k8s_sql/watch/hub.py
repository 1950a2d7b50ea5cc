"""The watch hub: who watches which keys, and handing each committed revision to them.

The follower publishes every committed revision to the hub, in order.  The hub finds the
watchers whose key range contains each changed key and hands each of them, once per
revision, the events it matched.  Watchers on a single key sit in a dict; watchers on a
range are grouped by identical range and the groups found with an interval index, so the
work per event grows with the watchers it matches, never with all watchers.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from k8s_sql.store.keys import KeyRange
from k8s_sql.store.model import Event
from k8s_sql.watch.intervals import IntervalIndex


class IWatcher(Interface):
    """What the hub calls on a registered watcher."""

    def publish(revision: int, events: Sequence[Event]) -> None:
        """Take the events of ``revision`` in the watcher's range, in log order (never empty).

        Called once per revision, in revision order, for revisions above the hub's
        ``revision`` at the time the watcher was added.
        """

    def resync(revision: int) -> None:
        """The hub jumped to ``revision`` without publishing the revisions before it.

        Whatever the watcher still needs up to ``revision`` must be read from the log.
        """


class IWatchHub(Interface):
    """The registry of watchers by key range, fed revision by revision."""

    revision = Attribute(
        "The newest revision handed to every watcher (0 until the follower positions the "
        "hub).  A watcher added now receives every later revision."
    )

    def add(watcher: IWatcher, key_range: KeyRange) -> None:
        """Register ``watcher`` for the keys of ``key_range``."""

    def remove(watcher: IWatcher) -> None:
        """Unregister ``watcher``; it receives nothing more.  Unknown watchers are ignored."""

    def publish(revision: int, events: Sequence[Event]) -> None:
        """Hand the events of ``revision`` (above ``revision``) to the watchers they match."""

    def resync(revision: int) -> None:
        """Jump to ``revision`` without publishing what came before; every watcher is told."""

    def reached(revision: int) -> Deferred[int]:
        """Fire with the hub's revision once it is at least ``revision``."""

    def __len__() -> int:
        """The number of registered watchers."""


@implementer(IWatchHub)
class WatchHub:
    """The in-memory watch hub of one server.

    @param revision: the revision to start from; the follower positions a fresh hub (0).
    """

    log = Logger()

    def __init__(self, revision: int = 0) -> None:
        self.revision = revision
        self._ranges: dict[IWatcher, KeyRange] = {}
        # Insertion-ordered dicts used as sets, so that fan-out order is reproducible.
        self._keys: dict[bytes, dict[IWatcher, None]] = {}
        self._groups: IntervalIndex[dict[IWatcher, None]] = IntervalIndex()
        self._joined: list[IWatcher] | None = None
        self._waiting: list[tuple[int, int, Deferred[int]]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._ranges)

    def add(self, watcher: IWatcher, key_range: KeyRange) -> None:
        """Register ``watcher`` for the keys of ``key_range``."""
        self.remove(watcher)
        self._ranges[watcher] = key_range
        if key_range.single:
            self._keys.setdefault(key_range.start, {})[watcher] = None
        else:
            group = self._groups.get(key_range.start, key_range.end)
            if group is None:
                group = {}
                self._groups.add(key_range.start, key_range.end, group)
            group[watcher] = None
        if self._joined is not None:
            self._joined.append(watcher)

    def remove(self, watcher: IWatcher) -> None:
        """Unregister ``watcher``; unknown watchers are ignored."""
        key_range = self._ranges.pop(watcher, None)
        if key_range is None:
            return
        if key_range.single:
            watchers = self._keys[key_range.start]
            del watchers[watcher]
            if not watchers:
                del self._keys[key_range.start]
        else:
            group = self._groups.get(key_range.start, key_range.end)
            assert group is not None
            del group[watcher]
            if not group:
                self._groups.remove(key_range.start, key_range.end)

    def _match(self, events: Sequence[Event]) -> dict[IWatcher, list[Event]]:
        """The events each watcher matches, looking only at the watchers that match."""
        matched: dict[IWatcher, list[Event]] = {}
        for event in events:
            key = event.kv.key
            for watcher in self._keys.get(key, ()):
                matched.setdefault(watcher, []).append(event)
            for group in self._groups.stab(key):
                for watcher in group:
                    matched.setdefault(watcher, []).append(event)
        return matched

    def publish(self, revision: int, events: Sequence[Event]) -> None:
        """Hand the events of ``revision`` to the watchers they match.

        ``revision`` advances only once every watcher has had its share, so a reader of
        ``revision`` never sees one that some watcher has yet to receive.  A watcher added
        while the revision is being handed out (by a callback of another watcher) still
        receives it.
        """
        assert revision > self.revision, (revision, self.revision)
        self._joined = []
        delivered: set[IWatcher] = set()
        try:
            for watcher, selected in self._match(events).items():
                if watcher in self._ranges:
                    delivered.add(watcher)
                    self._hand(watcher, revision, selected)
            while self._joined:
                joined, self._joined = self._joined, []
                for watcher in joined:
                    key_range = self._ranges.get(watcher)
                    if key_range is None or watcher in delivered:
                        continue
                    selected = [event for event in events if event.kv.key in key_range]
                    delivered.add(watcher)
                    if selected:
                        self._hand(watcher, revision, selected)
        finally:
            self._joined = None
            self.revision = revision
        self._wake()

    def _hand(self, watcher: IWatcher, revision: int, events: Sequence[Event]) -> None:
        """Give one watcher its events; a failing watcher must not cost the others theirs."""
        try:
            watcher.publish(revision, events)
        except Exception:
            self.log.failure(
                "Watcher {watcher!r} failed to take revision {revision}", watcher=watcher, revision=revision
            )

    def resync(self, revision: int) -> None:
        """Jump to ``revision``; every watcher is told that it may have missed revisions."""
        self.revision = max(self.revision, revision)
        for watcher in list(self._ranges):
            if watcher in self._ranges:
                watcher.resync(self.revision)
        self._wake()

    def reached(self, revision: int) -> Deferred[int]:
        """Fire with the hub's revision once it is at least ``revision``."""
        waiter: Deferred[int] = Deferred()
        if revision <= self.revision:
            waiter.callback(self.revision)
        else:
            heapq.heappush(self._waiting, (revision, next(self._order), waiter))
        return waiter

    def _wake(self) -> None:
        while self._waiting and self._waiting[0][0] <= self.revision:
            _, _, waiter = heapq.heappop(self._waiting)
            if not waiter.called:
                waiter.callback(self.revision)
