"""Auto-compaction on a ``task.Clock``: etcd's periodic and revision policies, failures, overlap."""

from __future__ import annotations

import pytest
from twisted.application.service import IService
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from zope.interface.verify import verifyObject

from k8s_sql.housekeeping.compactor import AutoCompactor, PeriodicRetention, RevisionRetention, retention_policy
from k8s_sql.store.errors import Compacted, FutureRevision, Unavailable

HOUR = 3600.0


class RevisionLog:
    """The part of a store the compactor uses, with the store's compaction rules."""

    def __init__(self) -> None:
        self.revision = 1
        self.compact_revision = 0
        #: (revision, physical) of each compaction accepted.
        self.compactions: list[tuple[int, bool]] = []
        #: While set, ``compact`` answers with Deferreds kept in ``pending``.
        self.hold = False
        self.pending: list[Deferred[int]] = []
        self.fail_reads = 0
        #: What a failed read raises.
        self.read_error: Exception = Unavailable("database gone")

    def write(self, count: int = 1) -> None:
        self.revision += count

    def current_revision(self) -> Deferred[int]:
        if self.fail_reads:
            self.fail_reads -= 1
            return fail(self.read_error)
        return succeed(self.revision)

    def compact(self, revision: int, physical: bool) -> Deferred[int]:
        if revision <= self.compact_revision:
            return fail(Compacted(self.compact_revision))
        if revision > self.revision:
            return fail(FutureRevision())
        self.compact_revision = revision
        self.compactions.append((revision, physical))
        if self.hold:
            waiter: Deferred[int] = Deferred()
            self.pending.append(waiter)
            return waiter
        return succeed(self.revision)


def started(policy: PeriodicRetention | RevisionRetention,
            log: RevisionLog | None = None) -> tuple[AutoCompactor, RevisionLog, Clock]:
    clock = Clock()
    log = log or RevisionLog()
    compactor = AutoCompactor(log, clock, policy)
    compactor.startService()
    return compactor, log, clock


def run_for(clock: Clock, seconds: float, step: float, log: RevisionLog, writes_per_step: int = 0) -> None:
    """Advance ``clock`` by ``seconds`` in steps, writing as it goes."""
    for _ in range(round(seconds / step)):
        log.write(writes_per_step)
        clock.advance(step)


# The policies from etcd's flags


@pytest.mark.parametrize(("mode", "retention", "policy"), [
    ("periodic", "0", None),
    ("periodic", "1", PeriodicRetention(HOUR)),
    ("periodic", "72", PeriodicRetention(72 * HOUR)),
    ("periodic", "30m", PeriodicRetention(1800.0)),
    ("periodic", "1h30m", PeriodicRetention(5400.0)),
    ("periodic", "0s", None),
    ("revision", "0", None),
    ("revision", "1000", RevisionRetention(1000)),
])
def test_policies_from_etcds_flags(mode: str, retention: str, policy: object) -> None:
    assert retention_policy(mode, retention) == policy


@pytest.mark.parametrize(("mode", "retention", "message"), [
    ("daily", "1", "unknown auto-compaction mode"),
    ("periodic", "soon", "periodic auto-compaction retention"),
    ("periodic", "-1", "periodic auto-compaction retention"),
    ("revision", "1h", "number of revisions"),
    ("revision", "-5", "number of revisions"),
])
def test_refuses_bad_policies(mode: str, retention: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        retention_policy(mode, retention)


def test_periodic_intervals_are_etcds() -> None:
    assert (PeriodicRetention(HOUR).compact_interval, PeriodicRetention(HOUR).check_interval) == (HOUR, 360.0)
    assert (PeriodicRetention(10 * HOUR).compact_interval, PeriodicRetention(10 * HOUR).check_interval) == (HOUR, 360.0)
    assert (PeriodicRetention(600.0).compact_interval, PeriodicRetention(600.0).check_interval) == (600.0, 60.0)
    assert RevisionRetention(5).check_interval == 300.0


def test_is_a_service() -> None:
    assert verifyObject(IService, AutoCompactor(RevisionLog(), Clock(), RevisionRetention(5)))


# Periodic mode


def test_periodic_first_compacts_one_retention_after_start_at_the_revision_of_then() -> None:
    compactor, log, clock = started(PeriodicRetention(600.0))
    log.write(9)  # the sample at start saw revision 1; the later ones see 10
    run_for(clock, 540.0, 60.0, log)
    assert log.compactions == []
    clock.advance(60.0)
    assert log.compactions == [(1, True)]
    compactor.stopService()


def test_periodic_keeps_the_retention_of_history() -> None:
    # One write a minute, ten minutes kept: each compaction is at the revision of ten minutes before.
    compactor, log, clock = started(PeriodicRetention(600.0))
    history = {0.0: log.revision}
    for _ in range(30):
        log.write()
        clock.advance(60.0)
        history[clock.seconds()] = log.revision
    assert log.compactions == [(history[t - 600.0], True) for t in (600.0, 1200.0, 1800.0)]
    assert compactor.compacted == history[1200.0]
    compactor.stopService()


def test_periodic_compacts_every_hour_when_the_retention_is_longer() -> None:
    compactor, log, clock = started(PeriodicRetention(3 * HOUR))
    run_for(clock, 6 * HOUR, 360.0, log, writes_per_step=1)
    # One write per 360 s check; first compaction after 3 h, then hourly, each 3 h back.
    times = [3 * HOUR, 4 * HOUR, 5 * HOUR, 6 * HOUR]
    assert [revision for revision, _ in log.compactions] == [1 + round((t - 3 * HOUR) / 360.0) for t in times]
    compactor.stopService()


def test_periodic_skips_when_nothing_was_written() -> None:
    log = RevisionLog()
    log.write(5)
    compactor, log, clock = started(PeriodicRetention(600.0), log)
    run_for(clock, 1200.0, 60.0, log)
    assert log.compactions == [(6, True)]
    run_for(clock, 1200.0, 60.0, log)
    assert log.compactions == [(6, True)]
    compactor.stopService()


@pytest.mark.parametrize("error", [RuntimeError("a bug"), Unavailable("database gone")])
def test_periodic_retries_at_the_next_check_after_a_failure(error: Exception) -> None:
    """A failure is logged, except an unavailable database, which the store reports once."""
    log = RevisionLog()
    log.write(5)
    compactor, log, clock = started(PeriodicRetention(600.0), log)
    run_for(clock, 540.0, 60.0, log)
    log.fail_reads, log.read_error = 1, error
    with capturedLogs() as events:
        clock.advance(60.0)
    assert log.compactions == []
    failures = [event["log_failure"].value for event in events if "log_failure" in event]
    assert failures == ([] if isinstance(error, Unavailable) else [error])
    assert compactor.running
    clock.advance(60.0)
    assert log.compactions == [(6, True)]
    compactor.stopService()


# Revision mode


def test_revision_mode_checks_every_five_minutes_and_keeps_the_last_revisions() -> None:
    compactor, log, clock = started(RevisionRetention(100))
    log.write(49)  # revision 50: nothing to compact yet
    clock.advance(300.0)
    assert log.compactions == []
    log.write(150)  # revision 200
    clock.advance(299.0)
    assert log.compactions == []
    clock.advance(1.0)
    assert log.compactions == [(100, True)]
    clock.advance(300.0)  # no writes: the same target is not compacted again
    assert log.compactions == [(100, True)]
    log.write(10)
    clock.advance(300.0)
    assert log.compactions == [(100, True), (110, True)]
    compactor.stopService()


def test_a_compaction_made_elsewhere_counts_as_done() -> None:
    compactor, log, clock = started(RevisionRetention(10))
    log.write(99)  # revision 100
    log.compact_revision = 95  # another server (or kube-apiserver) compacted further
    with capturedLogs() as events:
        clock.advance(300.0)
    assert log.compactions == []
    assert compactor.compacted == 95
    assert not [event for event in events if "log_failure" in event]
    compactor.stopService()


def test_checks_never_overlap_while_a_compaction_runs() -> None:
    compactor, log, clock = started(RevisionRetention(10))
    log.write(99)
    log.hold = True
    clock.advance(300.0)
    assert log.compactions == [(90, True)]
    log.write(100)
    clock.advance(900.0)  # the compaction still runs: no check starts
    assert log.compactions == [(90, True)]
    log.pending.pop().callback(200)
    clock.advance(300.0)
    assert log.compactions == [(90, True), (190, True)]
    compactor.stopService()


def test_stopping_abandons_a_compaction_in_progress() -> None:
    compactor, log, clock = started(RevisionRetention(10))
    log.write(99)
    log.hold = True
    clock.advance(300.0)
    (pending,) = log.pending
    with capturedLogs() as events:
        compactor.stopService()
    assert pending.called  # cancelled
    assert not [event for event in events if "log_failure" in event]
    assert not clock.getDelayedCalls()
