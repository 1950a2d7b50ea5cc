"""ReadQueue: when reads are grouped, how groups share the reader slots, cancellation and closing."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from k8s_sql.store.readqueue import Read, ReadQueue


class Groups:
    """A ``run_group`` that holds each group until the test answers it."""

    def __init__(self) -> None:
        self.started: list[tuple[list[Read], defer.Deferred]] = []

    def __call__(self, group: list[Read]) -> defer.Deferred[list[Any]]:
        done: defer.Deferred[list[Any]] = defer.Deferred()
        self.started.append((group, done))
        return done

    def sizes(self) -> list[int]:
        return [len(group) for group, _ in self.started]

    def finish(self, index: int) -> None:
        """Answer every read of group ``index`` with its first argument."""
        group, done = self.started[index]
        done.callback([args[0] for _, args in group])


def read(queue: ReadQueue, value: object) -> defer.Deferred:
    return queue.read(lambda session, v: v, (value,))


def results(reads: list[defer.Deferred]) -> list[Any]:
    found: list[Any] = []
    for deferred in reads:
        deferred.addBoth(found.append)
    return found


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def groups() -> Groups:
    return Groups()


def test_reads_of_one_reactor_turn_go_together_at_the_next(clock: Clock, groups: Groups) -> None:
    queue = ReadQueue(clock, 1, groups)
    answers = results([read(queue, n) for n in range(3)])
    assert groups.started == []
    clock.advance(0)
    assert groups.sizes() == [3]
    groups.finish(0)
    assert answers == [0, 1, 2]


def test_waiting_reads_are_shared_among_the_free_slots(clock: Clock, groups: Groups) -> None:
    queue = ReadQueue(clock, 3, groups)
    results([read(queue, n) for n in range(7)])
    clock.advance(0)
    assert groups.sizes() == [3, 2, 2]
    assert [args for _, args in groups.started[0][0]] == [(0,), (1,), (2,)]


def test_reads_arriving_while_every_slot_is_busy_wait_for_the_first_to_free(clock: Clock, groups: Groups) -> None:
    queue = ReadQueue(clock, 2, groups)
    results([read(queue, n) for n in range(2)])
    clock.advance(0)
    later = results([read(queue, n) for n in range(10, 15)])
    clock.advance(0)
    assert groups.sizes() == [1, 1]
    groups.finish(1)
    assert groups.sizes() == [1, 1, 5]
    groups.finish(2)
    assert later == [10, 11, 12, 13, 14]


def test_a_group_carries_at_most_most_reads(clock: Clock, groups: Groups) -> None:
    queue = ReadQueue(clock, 1, groups, most=4)
    results([read(queue, n) for n in range(10)])
    clock.advance(0)
    assert groups.sizes() == [4]
    groups.finish(0)
    groups.finish(1)
    assert groups.sizes() == [4, 4, 2]


def test_a_read_alone_gets_a_group_of_its_own(clock: Clock, groups: Groups) -> None:
    queue = ReadQueue(clock, 2, groups)
    answers = results([read(queue, 0), queue.read(lambda session, v: v, ("alone",), alone=True)])
    later = results([read(queue, n) for n in (3, 4)])
    clock.advance(0)
    assert [[args for _, args in group] for group, _ in groups.started] == [[(0,)], [("alone",)]]
    groups.finish(0)
    assert [args for _, args in groups.started[2][0]] == [(3,), (4,)]
    groups.finish(2)
    groups.finish(1)
    assert (answers, later) == ([0, "alone"], [3, 4])


def test_each_read_gets_its_own_outcome(clock: Clock, groups: Groups) -> None:
    queue = ReadQueue(clock, 1, groups)
    answers = results([read(queue, n) for n in range(2)])
    clock.advance(0)
    groups.started[0][1].callback([Failure(KeyError("refused")), "fine"])
    assert isinstance(answers[0], Failure) and answers[0].check(KeyError)
    assert answers[1] == "fine"


def test_a_failed_group_fails_each_of_its_reads(clock: Clock, groups: Groups) -> None:
    queue = ReadQueue(clock, 1, groups)
    answers = results([read(queue, n) for n in range(2)])
    clock.advance(0)
    groups.started[0][1].errback(ConnectionError("gone"))
    assert [failure.check(ConnectionError) for failure in answers] == [ConnectionError, ConnectionError]


def test_a_cancelled_read_leaves_the_queue(clock: Clock, groups: Groups) -> None:
    queue = ReadQueue(clock, 1, groups)
    first, second = read(queue, 1), read(queue, 2)
    first.cancel()
    answers = results([first, second])
    clock.advance(0)
    assert [args for _, args in groups.started[0][0]] == [(2,)]
    groups.finish(0)
    assert answers[0].check(defer.CancelledError) and answers[1] == 2


def test_a_read_cancelled_once_its_group_runs_is_answered_no_more(clock: Clock, groups: Groups) -> None:
    queue = ReadQueue(clock, 1, groups)
    reading = read(queue, 1)
    clock.advance(0)
    reading.cancel()
    answers = results([reading])
    groups.finish(0)
    assert len(answers) == 1 and answers[0].check(defer.CancelledError)


def test_closing_fails_the_waiting_reads_and_lets_running_groups_finish(clock: Clock, groups: Groups) -> None:
    queue = ReadQueue(clock, 1, groups)
    running = results([read(queue, 1)])
    clock.advance(0)
    waiting = results([read(queue, 2)])
    queue.close(ConnectionError("closed"))
    assert waiting[0].check(ConnectionError)
    groups.finish(0)
    assert running == [1]
    assert groups.sizes() == [1]
    assert clock.getDelayedCalls() == []


def test_closing_cancels_the_pending_turn(clock: Clock, groups: Groups) -> None:
    queue = ReadQueue(clock, 1, groups)
    waiting = results([read(queue, 1)])
    queue.close(ConnectionError("closed"))
    assert clock.getDelayedCalls() == []
    assert waiting[0].check(ConnectionError)
    assert groups.started == []
