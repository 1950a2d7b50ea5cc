"""The write queue: writes waiting together go in one transaction, in order, each answered."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.python.failure import Failure

from k8s_sql.store.errors import KeyNotFound
from k8s_sql.store.writequeue import Write, WriteQueue
from k8s_sql.store.writes import BatchFailure


def op(session: Any, *args: Any) -> None:
    """A write operation; the runner below never calls it."""


class Runner:
    """Runs batches when the test says, answering each write with its argument."""

    def __init__(self) -> None:
        self.batches: list[list[Write]] = []
        self.pending: list[Deferred[tuple[list[Any], int | None]]] = []
        self.revision = 1
        self.committed: list[int] = []

    def run(self, batch: list[Write]) -> Deferred[tuple[list[Any], int | None]]:
        self.batches.append(batch)
        self.pending.append(Deferred())
        return self.pending[-1]

    def commit(self) -> None:
        """The oldest batch commits, each write taking a revision."""
        batch = self.batches[len(self.batches) - len(self.pending)]
        self.revision += len(batch)
        self.pending.pop(0).callback(([args[0] for _, args in batch], self.revision))


def answers(done: Deferred[Any]) -> list[Any]:
    seen: list[Any] = []
    done.addBoth(seen.append)
    return seen


def test_writes_arriving_while_one_commits_go_together_in_order() -> None:
    runner = Runner()
    queue = WriteQueue(runner.run, runner.committed.append)
    first = answers(queue.write(op, ("a",)))
    rest = [answers(queue.write(op, (name,))) for name in ("b", "c", "d")]
    assert [[args for _, args in batch] for batch in runner.batches] == [[("a",)]]
    runner.commit()
    assert first == ["a"] and runner.committed == [2]
    assert [[args for _, args in batch] for batch in runner.batches][1] == [("b",), ("c",), ("d",)]
    runner.commit()
    assert [seen for seen in rest] == [["b"], ["c"], ["d"]] and runner.committed == [2, 5]


def test_batches_hold_at_most_the_limit() -> None:
    runner = Runner()
    queue = WriteQueue(runner.run, runner.committed.append, most=2)
    for name in "abcde":
        queue.write(op, (name,))
    while runner.pending:
        runner.commit()
    assert [len(batch) for batch in runner.batches] == [1, 2, 2]


def test_the_commit_is_reported_before_any_writer_hears_of_it() -> None:
    order: list[str] = []
    runner = Runner()
    queue = WriteQueue(runner.run, lambda revision: order.append(f"committed {revision}"))
    queue.write(op, ("a",)).addCallback(lambda response: order.append(f"answered {response}"))
    runner.commit()
    assert order == ["committed 2", "answered a"]


def test_a_write_refused_alone_is_answered_so_and_the_others_commit_without_it() -> None:
    runner = Runner()
    queue = WriteQueue(runner.run, runner.committed.append)
    queue.write(op, ("first",))
    seen = [answers(queue.write(op, (name,))) for name in ("x", "bad", "y")]
    runner.commit()
    runner.pending.pop(0).errback(BatchFailure(1, KeyNotFound()))
    assert isinstance(seen[1][0], Failure) and seen[1][0].check(KeyNotFound)
    assert [args for _, args in runner.batches[-1]] == [("x",), ("y",)]
    runner.commit()
    assert seen[0] == ["x"] and seen[2] == ["y"] and runner.committed == [2, 4]


def test_a_failed_transaction_fails_every_write_of_it() -> None:
    queue = WriteQueue(lambda batch: fail(RuntimeError("connection lost")), lambda revision: None)
    seen = answers(queue.write(op, ("a",)))
    assert isinstance(seen[0], Failure) and seen[0].check(RuntimeError)


def test_nothing_committed_reports_no_revision() -> None:
    committed: list[int] = []
    queue = WriteQueue(lambda batch: _done([None], None), committed.append)
    assert answers(queue.write(op, ("a",))) == [None] and committed == []


def _done(responses: list[Any], revision: int | None) -> Deferred[tuple[list[Any], int | None]]:
    done: Deferred[tuple[list[Any], int | None]] = Deferred()
    done.callback((responses, revision))
    return done

