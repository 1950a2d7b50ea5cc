"""Writes that wait together share one write transaction.

Every write of the store takes the revision counter's lock, so writes run one transaction
at a time.  Those that arrive while one is committing wait, then go together, in arrival
order, in one transaction: each still takes its own revision and gets its own answer, but
they share one lock, one round of statements and one commit.  A write refused alone
(``BatchFailure``) is answered so, and the others are committed without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from k8s_sql.store.pending import Pending
from k8s_sql.store.writes import BatchFailure

#: The most writes one transaction carries.
MAX_BATCH = 64

#: ``(operation, args)``: a write as ``writes.apply`` takes it.
Write = tuple[Callable[..., Any], tuple]

#: Runs writes in one transaction; fires with their responses, in order, and the revision
#: committed (``None`` when nothing changed), or fails with ``BatchFailure`` when one write
#: was refused alone, or otherwise when the transaction failed as a whole.
BatchRunner = Callable[[list[Write]], "defer.Deferred[tuple[list[Any], int | None]]"]


class WriteQueue:
    """Commits writes in batches of at most ``most``, one batch at a time, by ``run_batch``;
    ``committed(revision)`` is told of each commit before its writers are answered."""

    def __init__(self, run_batch: BatchRunner, committed: Callable[[int], None], most: int = MAX_BATCH) -> None:
        self._run_batch = run_batch
        self._committed = committed
        self._most = most
        self._waiting: list[Pending[Write]] = []
        self._writing = False

    def write(self, operation: Callable[..., Any], args: tuple) -> defer.Deferred[Any]:
        """Queue ``operation(executor, *args)``; fires with its response."""
        waiting = Pending((operation, args))
        self._waiting.append(waiting)
        if not self._writing:
            self._writing = True
            defer.ensureDeferred(self._drain())
        return waiting.done

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self._most], self._waiting[self._most :]
                await self._commit(batch)
        finally:
            self._writing = False

    async def _commit(self, batch: list[Pending[Write]]) -> None:
        while batch:
            try:
                responses, revision = await self._run_batch([waiting.work for waiting in batch])
            except BatchFailure as failed:
                batch.pop(failed.index).answer(Failure(failed.error))
                continue
            except Exception:
                failure = Failure()
                for waiting in batch:
                    waiting.answer(failure)
                return
            if revision is not None:
                self._committed(revision)
            for waiting, response in zip(batch, responses, strict=True):
                waiting.answer(response)
            return
