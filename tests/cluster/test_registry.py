"""The member registry service on a ``Clock``: registering, beating, expiry, names, leaving."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from zope.interface.verify import verifyObject

from k8s_sql.cluster.process import ProcessPlace
from k8s_sql.cluster.registry import DEREGISTER_TIMEOUT, MemberRegistry, NameTaken
from k8s_sql.staged import IStagedService
from k8s_sql.store.errors import Unavailable
from k8s_sql.store.model import MemberRecord
from tests.cluster.doubles import Registry

TIMEOUT = 10.0
PLACE = ProcessPlace("host-1", "boot/pid:[1]", 4242)


def server(
    store: Registry, clock: Clock, instance: int, name: str, port: int = 1, place: ProcessPlace = PLACE
) -> MemberRegistry:
    return MemberRegistry(
        store,  # type: ignore[arg-type]
        clock,
        instance,
        name,
        lambda: 100 + instance,
        lambda: [f"http://127.0.0.1:{port}"],
        lambda: [f"http://127.0.0.1:{port + 1000}"],
        TIMEOUT,
        place,
    )


def started(registry: MemberRegistry) -> Any:
    """Start ``registry``; the outcome of its start."""
    registry.startService()
    outcome: list[Any] = []
    registry.whenStarted().addBoth(outcome.append)
    return outcome[0] if outcome else None


def test_a_server_registers_with_its_urls_and_sees_the_others() -> None:
    store, clock = Registry(), Clock()
    clock.advance(1000)
    first, second = server(store, clock, 1, "a"), server(store, clock, 2, "b", port=2)
    assert verifyObject(IStagedService, first)
    seen: list[list[int]] = []
    first.observe(lambda members: seen.append([member.instance for member in members]))
    assert started(first) is None
    assert store.rows[1] == MemberRecord(
        1, "a", 101, ("http://127.0.0.1:1",), ("http://127.0.0.1:1001",), "host-1", "boot/pid:[1]", 4242, 1010.0
    )
    with capturedLogs() as events:
        started(second)
        clock.advance(first.interval)
    assert seen == [[1], [1, 2]]
    assert [e["log_format"].format(**e) for e in events if e["log_namespace"].endswith("MemberRegistry")][-1] == (
        "b (2) joined"
    )


def test_beats_keep_a_server_live_and_one_that_stops_beating_drops_out_after_the_timeout() -> None:
    store, clock = Registry(), Clock()
    watcher, beating, silent = (server(store, clock, n, name, port=n) for n, name in ((1, "w"), (2, "b"), (3, "s")))
    for registry in (watcher, beating, silent):
        started(registry)
    silent._beat.stop()  # as if killed: no more beats
    for _ in range(5):  # its deadline, one timeout after its last beat, is now
        clock.advance(watcher.interval)
    assert [m.instance for m in watcher.members] == [2, 3, 1]
    with capturedLogs() as events:
        clock.advance(watcher.interval)
    assert [m.instance for m in watcher.members] == [2, 1]
    assert "s (3) left" in [e["log_format"].format(**e) for e in events]
    for _ in range(4):
        clock.advance(watcher.interval)
    assert sorted(store.rows) == [1, 2, 3]
    clock.advance(watcher.interval)
    assert sorted(store.rows) == [1, 2]  # forgotten one timeout after it expired


def test_a_stopping_server_leaves_at_once() -> None:
    store, clock = Registry(), Clock()
    registry = server(store, clock, 1, "a")
    started(registry)
    stopped: list[Any] = []
    registry.stopService().addBoth(stopped.append)
    assert stopped == [None] and store.rows == {}
    clock.advance(TIMEOUT * 10)
    assert store.rows == {}


def test_a_server_that_cannot_leave_stops_anyway_after_a_while() -> None:
    store, clock = Registry(), Clock()
    registry = server(store, clock, 1, "a")
    started(registry)

    async def hang(instance: int) -> None:
        await Deferred()

    store.deregister_member = hang  # type: ignore[method-assign]
    stopped: list[Any] = []
    with capturedLogs() as events:
        registry.stopService().addBoth(stopped.append)
        clock.advance(DEREGISTER_TIMEOUT)
    assert stopped == [None]
    assert any("could not leave the member registry" in e["log_format"] for e in events)


def test_beating_goes_on_through_failures_and_registers_again_if_expired() -> None:
    store, clock = Registry(), Clock()
    registry = server(store, clock, 1, "a")
    started(registry)
    store.fail = Unavailable("database is down")
    with capturedLogs() as events:
        for _ in range(10):
            clock.advance(registry.interval)
    assert events == []  # the store reports the outage, once
    store.fail = RuntimeError("a bug")
    with capturedLogs() as events:
        clock.advance(registry.interval)
    assert [e["log_format"] for e in events] == ["Heartbeat failed; beating again in {interval} s"]
    store.fail = None
    store.rows.clear()  # expired and forgotten meanwhile, by another server
    with capturedLogs() as events:
        clock.advance(registry.interval)
    assert store.rows[1].deadline == clock.seconds() + TIMEOUT
    assert any("registration had expired" in e["log_format"] for e in events)


def test_processes_of_one_server_share_its_name() -> None:
    store, clock = Registry(), Clock()
    worker_one, worker_two = server(store, clock, 1, "a"), server(store, clock, 2, "a")
    assert started(worker_one) is None and started(worker_two) is None
    assert sorted(store.rows) == [1, 2]


def test_a_second_server_with_a_live_server_s_name_fails_to_start_once_it_sees_it_beat() -> None:
    store, clock = Registry(), Clock()
    holder = server(store, clock, 1, "a", place=ProcessPlace("host-2", "other", 7))
    started(holder)
    second = server(store, clock, 2, "a", port=2)
    with capturedLogs() as events:
        assert started(second) is None  # waiting
    assert any("waiting up to" in e["log_format"] for e in events)
    clock.advance(second.interval)  # the holder beat meanwhile
    outcome: list[Any] = []
    second.whenStarted().addErrback(outcome.append)
    assert outcome and outcome[0].check(NameTaken)
    assert str(outcome[0].value) == (
        "another server is running as member 'a' (host host-2, process 7, client URLs http://127.0.0.1:1): "
        "give each server sharing the database its own --name"
    )
    assert sorted(store.rows) == [1]


def test_a_name_whose_holder_stopped_beating_is_taken_over_once_it_expires() -> None:
    store, clock = Registry(), Clock()
    holder = server(store, clock, 1, "a", place=ProcessPlace("host-2", "other", 7))
    started(holder)
    holder._beat.stop()
    second = server(store, clock, 2, "a", port=2)
    started(second)
    clock.advance(TIMEOUT - second.interval / 2)
    assert not second._readiness.outcome
    clock.advance(second.interval)
    assert second._readiness.outcome is None and 2 in store.rows


@pytest.fixture
def gone_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_name_held_by_a_gone_process_of_this_pid_space_is_taken_over_at_once(gone_pid: int) -> None:
    """A server restarted after a crash, on another port: the earlier run's process is gone."""
    from k8s_sql.cluster.process import pid_space

    here = ProcessPlace("host-1", pid_space(), gone_pid)
    store, clock = Registry(), Clock()
    crashed = server(store, clock, 1, "a", place=here)
    started(crashed)
    crashed._beat.stop()
    restarted = server(store, clock, 2, "a", port=2, place=ProcessPlace.here())
    with capturedLogs() as events:
        assert started(restarted) is None
    assert sorted(store.rows) == [2]
    assert any("taking over the name" in e["log_format"] for e in events)


def test_lookup_reads_the_registry_again_for_an_unknown_process_and_shares_the_read() -> None:
    store, clock = Registry(), Clock()
    first = server(store, clock, 1, "a")
    started(first)
    server(store, clock, 2, "b", port=2).startService()
    assert [m.instance for m in first.members] == [1]
    calls = 0
    live = store.live_members

    async def counted(now: float) -> list[MemberRecord]:
        nonlocal calls
        calls += 1
        return await live(now)

    store.live_members = counted  # type: ignore[method-assign]
    found: list[Any] = []
    Deferred.fromCoroutine(first.lookup(2)).addCallback(found.append)
    Deferred.fromCoroutine(first.lookup(1)).addCallback(found.append)
    Deferred.fromCoroutine(first.lookup(9)).addCallback(found.append)
    assert [getattr(member, "instance", member) for member in found] == [2, 1, None]
    assert calls == 2


def test_a_server_stopping_during_a_beat_leaves_once_the_beat_has_ended() -> None:
    """Deleting the row before a beat under way ends would let the beat write it again."""
    store, clock = Registry(), Clock()
    registry = server(store, clock, 1, "a")
    started(registry)
    renew = store.renew_member
    held: Deferred[None] = Deferred()

    async def slow(*args: Any) -> Any:
        await held
        return await renew(*args)

    store.renew_member = slow  # type: ignore[method-assign]
    clock.advance(registry.interval)  # a beat begins
    stopped: list[Any] = []
    registry.stopService().addBoth(stopped.append)
    assert stopped == [] and 1 in store.rows
    held.callback(None)  # the beat ends, writing the row; then the server leaves
    assert stopped == [None] and store.rows == {}
