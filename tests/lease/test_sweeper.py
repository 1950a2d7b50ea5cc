"""The lease sweeper: expiry on a ``task.Clock``, error retry, no overlapping sweeps."""

from __future__ import annotations

import pytest
from twisted.application.service import IService
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from zope.interface.verify import verifyObject

from k8s_sql.housekeeping.sweeper import DEFAULT_INTERVAL, LeaseSweeper
from k8s_sql.store.errors import Unavailable
from k8s_sql.store.interfaces import ILeaseStore
from tests.lease.doubles import MemoryLeaseStore


def sweeper_on(store: MemoryLeaseStore, interval: float = 1.0, batch: int = 100) -> tuple[LeaseSweeper, Clock]:
    clock = Clock()
    return LeaseSweeper(store, clock, interval=interval, batch=batch), clock


def test_interfaces() -> None:
    store = MemoryLeaseStore()
    sweeper, _ = sweeper_on(store)
    assert verifyObject(ILeaseStore, store)
    assert verifyObject(IService, sweeper)


def test_default_interval_is_etcds() -> None:
    assert LeaseSweeper(MemoryLeaseStore(), Clock()).step == DEFAULT_INTERVAL == 0.5


@pytest.mark.parametrize("arguments", [{"interval": 0}, {"interval": -1.0}, {"batch": 0}])
def test_refuses_bad_settings(arguments: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LeaseSweeper(MemoryLeaseStore(), Clock(), **arguments)


def test_expires_a_lease_once_its_deadline_passed() -> None:
    store = MemoryLeaseStore()
    store.lease_grant(7, 5, 0.0)
    store.attach(b"b", 7)
    store.attach(b"a", 7)
    sweeper, clock = sweeper_on(store)
    sweeper.startService()
    clock.advance(4)
    assert 7 in store.rows
    clock.advance(2)
    assert 7 not in store.rows
    assert store.deleted == [(4, b"a"), (4, b"b")]
    sweeper.stopService()


def test_sweeps_at_start_then_every_interval_at_the_clocks_time() -> None:
    store = MemoryLeaseStore()
    sweeper, clock = sweeper_on(store, interval=0.5, batch=10)
    clock.advance(100)
    sweeper.startService()
    clock.advance(0.5)
    clock.advance(0.5)
    assert store.expire_calls == [(100.0, 10), (100.5, 10), (101.0, 10)]
    sweeper.stopService()


def test_a_sweep_revokes_at_most_one_batch() -> None:
    store = MemoryLeaseStore()
    for lease_id in (1, 2, 3):
        store.lease_grant(lease_id, 1, 0.0)
    sweeper, clock = sweeper_on(store, batch=2)
    clock.advance(10)
    sweeper.startService()
    assert sorted(store.rows) == [3]
    clock.advance(1)
    assert store.rows == {}
    sweeper.stopService()


@pytest.mark.parametrize("error", [RuntimeError("a bug"), Unavailable("database gone")])
def test_a_failed_sweep_is_logged_and_the_next_one_retries(error: Exception) -> None:
    """A failure is logged, except an unavailable database, which the store reports once."""
    store = MemoryLeaseStore()
    store.lease_grant(9, 2, 0.0)
    store.fail_next.append(error)
    sweeper, clock = sweeper_on(store)
    clock.advance(3)
    with capturedLogs() as events:
        sweeper.startService()
    assert 9 in store.rows
    failures = [e["log_failure"].value for e in events if "log_failure" in e]
    assert failures == ([] if isinstance(error, Unavailable) else [error])
    assert sweeper.running
    clock.advance(1)
    assert 9 not in store.rows
    sweeper.stopService()


def test_sweeps_never_overlap() -> None:
    store = MemoryLeaseStore()
    store.lease_grant(1, 1, 0.0)
    store.hold = True
    sweeper, clock = sweeper_on(store, interval=1.0)
    clock.advance(5)
    sweeper.startService()
    for _ in range(10):
        clock.advance(1)
    assert len(store.held) == 1 and len(store.expire_calls) == 1
    store.release()
    assert store.rows == {}
    clock.advance(1)
    assert len(store.expire_calls) == 2
    store.release()
    sweeper.stopService()


def test_stopping_waits_for_the_sweep_in_flight_and_ends_the_loop() -> None:
    store = MemoryLeaseStore()
    store.hold = True
    sweeper, clock = sweeper_on(store)
    sweeper.startService()
    stopped = sweeper.stopService()
    assert not stopped.called
    store.release()
    assert stopped.called
    clock.advance(10)
    assert len(store.expire_calls) == 1
    assert not sweeper.running


def test_logs_what_it_revoked() -> None:
    store = MemoryLeaseStore()
    store.lease_grant(0x2A, 1, 0.0)
    sweeper, clock = sweeper_on(store)
    clock.advance(2)
    with capturedLogs() as events:
        sweeper.startService()
    [event] = [e for e in events if e.get("leases")]
    assert event["count"] == 1 and event["leases"] == [0x2A]
    sweeper.stopService()
