"""Whether the database answers: a cheap query with a timeout, one at a time."""

from __future__ import annotations

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime

from k8s_sql.store.interfaces import IChangeLog

#: Seconds a health check waits for the database (kube-apiserver's etcd probe allows 2 s).
DEFAULT_TIMEOUT = 2.0


class DatabaseHealth:
    """Checks the database by reading the current revision.

    A database that hangs must not pile up probes on the connection pool, so only one
    query runs at a time: checks made while it runs share its outcome, each with its own
    timeout.

    @param store: the store whose database is checked.
    @param clock: times the checks out.
    @param timeout: seconds a check waits before it reports the database as failing.
    """

    def __init__(self, store: IChangeLog, clock: IReactorTime, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.store = store
        self.clock = clock
        self.timeout = timeout
        self._query: Deferred[None] | None = None
        self._waiting: list[Deferred[str | None]] = []

    def check(self) -> Deferred[str | None]:
        """Fire with ``None`` when the database answered in time, else with the reason it did not."""
        answer: Deferred[str | None] = Deferred()
        # Drop the checks that timed out while the query still runs.
        self._waiting = [waiter for waiter in self._waiting if not waiter.called]
        self._waiting.append(answer)
        answer.addTimeout(self.timeout, self.clock, onTimeoutCancel=_timed_out)
        if self._query is None:
            self._query = ensureDeferred(self._ask())
        return answer

    async def _ask(self) -> None:
        try:
            await self.store.current_revision()
            reason = None
        except Exception as error:
            reason = f"the database failed: {error}"
        self._query = None
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            if not waiter.called:
                waiter.callback(reason)


def _timed_out(result: object, timeout: float) -> str:
    return f"the database did not answer within {timeout:g} s"
