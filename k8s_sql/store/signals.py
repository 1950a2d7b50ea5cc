"""News of commits, from every source, for whoever follows the log (the watch follower).

A commit is news from four places: this store's own write path, at once after each
commit (``local``); the database, where it pushes other servers' announcements (PostgreSQL
LISTEN/NOTIFY, ``k8s_sql.store.listener``); the other servers themselves, whose signals
arrive over the peer channel (``peer``, from ``k8s_sql.cluster.peers``); and, as the
fallback for commits nothing announces, a poll every ``poll_interval`` seconds, which says
only that something may be new.  Local commits are also told to the local subscribers,
which pass them on to the other servers and to this server's other processes; peers'
signals to the peer subscribers, which pass them on to this server's other processes only,
so that no signal travels on from the server that received it.
A signal only wakes: what was committed, and in which order, is read from the log, so a
lost signal delays an event by at most one poll and never reorders one.  Observers hear a
revision once, from whichever source named it first (on PostgreSQL a peer's commit arrives
both over the peer channel and by NOTIFY); a signal naming a revision no newer than one
already told is not repeated to them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

#: Seconds between polls for commits by other servers, as kine's default.
DEFAULT_POLL_INTERVAL = 1.0

#: ``observer(revision)``: every revision up to ``revision`` is committed, or, for ``None``,
#: something may have been committed (a poll).
CommitObserver = Callable[[int | None], None]


class Stoppable(Protocol):
    """What a push channel's start returns: how to stop it."""

    def stop(self) -> Awaitable[object]:
        """Stop receiving; fires when done."""


#: Starts the database's push channel, announcements going to the given observer; returns
#: how to stop it, or ``None`` when the database cannot push.
Listen = Callable[[Callable[[int], None]], Awaitable[Stoppable | None]]


class CommitSignals:
    """The one source of commit signals a store offers its followers.

    @param clock: times the polls.
    @param poll_interval: seconds between polls; ``None`` or 0 never polls (one server
        alone, or a database that pushes every commit).
    @param listen: starts the database's push channel, if it has one.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, poll_interval: float | None = None, listen: Listen | None = None) -> None:
        self.clock = clock
        self.poll_interval = poll_interval
        self._listen = listen
        self._observers: list[CommitObserver] = []
        self._local: list[Callable[[int], None]] = []
        self._peer: list[Callable[[int], None]] = []
        self._channel: Stoppable | None = None
        self._poller: LoopingCall | None = None
        #: The newest revision told to the observers.
        self._told = 0

    def __len__(self) -> int:
        """How many observers are subscribed."""
        return len(self._observers)

    def subscribe(self, observer: CommitObserver) -> Callable[[], None]:
        """Call ``observer`` on every signal, in the reactor thread; returns the unsubscriber."""
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)

    def subscribe_local(self, observer: Callable[[int], None]) -> Callable[[], None]:
        """Call ``observer(revision)`` after each commit made through this store only (to pass
        the news on to processes that share the database); returns the unsubscriber."""
        self._local.append(observer)
        return lambda: self._local.remove(observer)

    def subscribe_peer(self, observer: Callable[[int], None]) -> Callable[[], None]:
        """Call ``observer(revision)`` for each commit another server signalled to this store
        (to pass the news on to this server's other processes); returns the unsubscriber."""
        self._peer.append(observer)
        return lambda: self._peer.remove(observer)

    def committed(self, revision: int | None) -> None:
        """Signal that ``revision`` is committed (``None``: something may be); any source calls this."""
        self._tell_observers(revision)

    def local(self, revision: int) -> None:
        """Signal a commit made through this store: every observer hears of it, local ones too."""
        self._tell_observers(revision)
        self._tell(self._local, revision)

    def peer(self, revision: int) -> None:
        """Signal a commit another server signalled: every observer hears of it, peer ones too."""
        self._tell_observers(revision)
        self._tell(self._peer, revision)

    def _tell_observers(self, revision: int | None) -> None:
        if revision is not None:
            if revision <= self._told:
                return
            self._told = revision
        self._tell(self._observers, revision)

    def _tell(self, observers: list[Any], revision: int | None) -> None:
        for observer in list(observers):
            try:
                observer(revision)
            except Exception:
                self.log.failure("commit observer {observer!r} failed", observer=observer)

    async def start(self) -> None:
        """Open the database's push channel (once its first attempt ended) and start polling."""
        if self._listen is not None:
            self._channel = await self._listen(self.committed)
        if self.poll_interval:
            self._poller = LoopingCall(self.committed, None)
            self._poller.clock = self.clock
            self._poller.start(self.poll_interval, now=False)

    async def stop(self) -> None:
        """Stop polling and close the push channel."""
        poller, self._poller = self._poller, None
        if poller is not None and poller.running:
            poller.stop()
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.stop()
