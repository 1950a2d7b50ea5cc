"""Commits announced by other servers, pushed by PostgreSQL's LISTEN/NOTIFY.

A dedicated autocommit connection LISTENs on the store's channel.  Its socket is watched by
the reactor (``addReader``); each notification carries a committed revision.  When the
connection drops, the listener reconnects with a growing delay and, once back, reports the
current revision, since announcements made meanwhile were lost.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, threads
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

#: Reconnection delays, in seconds: doubled after each failure up to the maximum.
FIRST_DELAY = 0.5
MAX_DELAY = 15.0


@implementer(IReadDescriptor)
class CommitListener:
    """Calls ``observer(revision)`` for every commit announced on ``channel``.

    ``connect`` opens a fresh autocommit ``psycopg.Connection``; it is called in the
    reactor's thread pool since connecting blocks.
    """

    log = Logger()

    def __init__(self, reactor: Any, connect: Callable[[], Any], channel: str, observer: Callable[[int], None]) -> None:
        self._reactor = reactor
        self._connect = connect
        self._channel = channel
        self._observer = observer
        self._connection: Any = None
        self._fd = -1
        self._delay = FIRST_DELAY
        self._retry: Any = None
        self._opening: defer.Deferred | None = None
        self._stopped = False
        self._reconnecting = False

    def start(self) -> defer.Deferred[None]:
        """Connect and listen; fires once this attempt ended.  Failures are retried until ``stop``."""
        self._opening = threads.deferToThreadPool(self._reactor, self._reactor.getThreadPool(), self._open)
        self._opening.addCallbacks(self._opened, self._failed)
        return self._opening

    def stop(self) -> defer.Deferred:
        """Stop listening and close the connection; fires when done."""
        self._stopped = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        if self._connection is not None:
            self._reactor.removeReader(self)
            self._close()
        opening, self._opening = self._opening, None
        if opening is None:
            return defer.succeed(None)
        done: defer.Deferred[None] = defer.Deferred()
        opening.addBoth(lambda _: done.callback(None))
        return done

    def _open(self) -> tuple[Any, int]:
        connection = self._connect()
        try:
            connection.execute(f'LISTEN "{self._channel}"')
            revision = connection.execute("SELECT revision FROM k8s_revision WHERE id = 1").fetchone()[0]
            connection.pgconn.nonblocking = 1
        except BaseException:
            connection.close()
            raise
        return connection, revision

    def _opened(self, result: tuple[Any, int]) -> None:
        self._opening = None
        connection, revision = result
        if self._stopped:
            connection.close()
            return
        self._connection = connection
        # The reactor watches a duplicate of the socket: libpq closes its own descriptor as
        # soon as it sees the connection fail, before the reactor could stop watching it.
        self._fd = os.dup(connection.pgconn.socket)
        self._delay = FIRST_DELAY
        self._reactor.addReader(self)
        if self._reconnecting:
            self.log.info("listening for commits on {channel} again", channel=self._channel)
            self._observer(revision)
        else:
            self.log.debug("listening for commits on {channel}", channel=self._channel)

    def _failed(self, failure: Failure) -> None:
        self._opening = None
        if self._stopped:
            return
        # Once listening was lost, the outage is the database's, which the store reports.
        (self.log.debug if self._reconnecting else self.log.warn)(
            "cannot listen for commits, retrying in {delay}s: {error}", delay=self._delay, error=failure.value
        )
        self._start_later()

    def fileno(self) -> int:
        """The listening connection's socket (a duplicate)."""
        return self._fd

    def doRead(self) -> Failure | None:
        """Read what arrived and report every announced revision."""
        pgconn = self._connection.pgconn
        try:
            pgconn.consume_input()
        except Exception as error:
            return Failure(ConnectionLost(str(error)))
        revisions = []
        while (notification := pgconn.notifies()) is not None:
            revisions.append(int(notification.extra))
        if revisions:
            self._observer(max(revisions))
        return None

    def connectionLost(self, reason: Failure) -> None:
        """The connection dropped: reconnect, unless stopping."""
        self._close()
        if not self._stopped:
            self.log.info(
                "lost the commit listener's connection ({reason}); reconnecting",
                reason=reason.value,
            )
            self._start_later()

    def _start_later(self) -> None:
        self._reconnecting = True
        self._retry = self._reactor.callLater(self._delay, self.start)
        self._delay = min(self._delay * 2, MAX_DELAY)

    def logPrefix(self) -> str:
        """How the reactor names this descriptor in logs."""
        return "CommitListener"

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
        if self._fd != -1:
            os.close(self._fd)
            self._fd = -1
