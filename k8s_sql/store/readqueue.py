"""Reads that wait together share one read transaction.

Every read of the store is a function run in a read-only snapshot transaction on a reader
connection (``Database.read``).  Reads called while the reader connections are busy, or in
the same turn of the reactor, gain nothing from a transaction each: any snapshot taken
after they were all called answers each of them as a transaction of its own would, so
they stay linearizable.  A ``ReadQueue`` holds such reads until the next reactor turn
or until a reader is free, then hands them over in groups, one transaction per group,
which saves a thread hop, a snapshot and a commit per read.  A read queued ``alone`` (a
long one, such as a snapshot of the whole store) gets a group of its own, so that it holds
up no other read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from k8s_sql.store.pending import Pending

#: The most reads one transaction carries.
MAX_GROUP = 64

#: ``(function, args)``: a read as ``Database.read`` takes it.
Read = tuple[Callable[..., Any], tuple]

#: Runs a group of reads in one transaction; fires with one outcome per read, in order:
#: its result or, for a read that failed alone, a ``Failure``.
GroupRunner = Callable[[list[Read]], "defer.Deferred[list[Any]]"]


class ReadQueue:
    """Groups reads for at most ``slots`` transactions at a time, run by ``run_group``.

    Waiting reads are shared evenly among the free slots, at most ``most`` per group;
    a slot that frees up takes the reads that arrived meanwhile.
    """

    def __init__(self, reactor: IReactorTime, slots: int, run_group: GroupRunner, most: int = MAX_GROUP) -> None:
        self._reactor = reactor
        self._slots = slots
        self._run_group = run_group
        self._most = most
        self._waiting: list[Pending[tuple[Read, bool]]] = []
        self._running = 0
        self._call: IDelayedCall | None = None

    def read(self, function: Callable[..., Any], args: tuple, alone: bool = False) -> defer.Deferred[Any]:
        """Queue ``function(session, *args)``, in a group of its own if ``alone``; fires with
        its result.  Cancelling the Deferred takes the read out of the queue if its group
        has not started yet."""
        waiting: Pending[tuple[Read, bool]] = Pending(((function, args), alone), self._cancel)
        self._waiting.append(waiting)
        if self._call is None and self._running < self._slots:
            self._call = self._reactor.callLater(0, self._dispatch)
        return waiting.done

    def close(self, error: Exception) -> None:
        """Fail every read still waiting with ``error``; groups already running finish."""
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()
        waiting, self._waiting = self._waiting, []
        for read in waiting:
            read.answer(Failure(error))

    def _dispatch(self) -> None:
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()
        while self._waiting and self._running < self._slots:
            share = -(-len(self._waiting) // (self._slots - self._running))
            group = self._waiting[: min(share, self._most)]
            alone = next((index for index, waiting in enumerate(group) if waiting.work[1]), None)
            if alone is not None:
                group = group[: alone or 1]
            del self._waiting[: len(group)]
            self._running += 1
            self._run_group([waiting.work[0] for waiting in group]).addBoth(self._answer, group)

    def _answer(self, outcomes: list[Any] | Failure, group: list[Pending[tuple[Read, bool]]]) -> None:
        self._running -= 1
        if isinstance(outcomes, Failure):
            outcomes = [outcomes] * len(group)
        for waiting, outcome in zip(group, outcomes, strict=True):
            waiting.answer(outcome)
        self._dispatch()

    def _cancel(self, done: defer.Deferred) -> None:
        for index, waiting in enumerate(self._waiting):
            if waiting.done is done:
                del self._waiting[index]
                return
