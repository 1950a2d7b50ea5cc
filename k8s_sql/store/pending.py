"""Work waiting in one of the store's queues, and the Deferred its caller awaits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from twisted.internet import defer
from twisted.python.failure import Failure

W = TypeVar("W")


class Pending(Generic[W]):
    """``work`` waiting for its turn; ``done`` fires with its outcome.

    @param cancel: called with ``done`` when the caller cancels it.
    """

    __slots__ = ("done", "work")

    def __init__(self, work: W, cancel: Callable[[defer.Deferred[Any]], None] | None = None) -> None:
        self.work = work
        self.done: defer.Deferred[Any] = defer.Deferred(cancel)

    def answer(self, outcome: object) -> None:
        """Fire ``done`` with a result or a ``Failure``, unless the caller gave up."""
        if self.done.called:
            return
        if isinstance(outcome, Failure):
            self.done.errback(outcome)
        else:
            self.done.callback(outcome)
