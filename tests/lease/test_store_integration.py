"""The lease service and sweeper over the real SQL store, on every backend.

Database I/O runs on the real reactor (the ``run`` fixture); the lease clock is a
``task.Clock`` touched only in the reactor thread, so deadlines are exact.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.internet.task import Clock

from k8s_sql.etcd import errors
from k8s_sql.etcd.header import Identity
from k8s_sql.etcd.lease import LeaseService
from k8s_sql.housekeeping.sweeper import LeaseSweeper
from k8s_sql.proto import rpc_pb2
from k8s_sql.store import open_store
from k8s_sql.store.model import EventType, PutRequest
from tests.lease.doubles import ScriptedCall

Run = Callable[..., Any]
START = 1_000_000.0


def at(seconds: float) -> Clock:
    clock = Clock()
    clock.advance(seconds)
    return clock


def test_service_grants_renews_and_revokes(run: Run, store: Any) -> None:
    clock = at(START)
    service = LeaseService(store, Identity(store.cluster_id, 1), clock)
    call = ScriptedCall()
    granted = run(ensureDeferred, service.lease_grant(rpc_pb2.LeaseGrantRequest(ID=0, TTL=1), call))
    assert granted.ID > 0 and granted.TTL == 2
    run(store.put, PutRequest(b"k", b"v", lease=granted.ID))
    run(clock.advance, 1.5)
    ttl = run(ensureDeferred, service.lease_time_to_live(rpc_pb2.LeaseTimeToLiveRequest(ID=granted.ID, keys=True), call))
    assert (ttl.TTL, ttl.grantedTTL, list(ttl.keys), ttl.header.revision) == (0, 2, [b"k"], 2)

    def keep_alive_once() -> Any:
        call.client_sends(rpc_pb2.LeaseKeepAliveRequest(ID=granted.ID))
        call.client_sends(None)
        return ensureDeferred(service.lease_keep_alive(call))

    run(keep_alive_once)
    assert call.sent[-1].TTL == 2
    run(clock.advance, 1.5)  # past the original deadline, within the renewed one
    assert run(ensureDeferred, service.lease_time_to_live(rpc_pb2.LeaseTimeToLiveRequest(ID=granted.ID), call)).TTL == 0
    revoked = run(ensureDeferred, service.lease_revoke(rpc_pb2.LeaseRevokeRequest(ID=granted.ID), call))
    assert revoked.header.revision == 3
    with pytest.raises(Exception) as caught:
        run(ensureDeferred, service.lease_revoke(rpc_pb2.LeaseRevokeRequest(ID=granted.ID), call))
    refusal = errors.translate(caught.value)
    assert refusal is not None and (refusal.code, refusal.message) == errors.LEASE_NOT_FOUND


def test_a_sweep_deletes_each_expired_leases_keys_in_one_revision(run: Run, store: Any) -> None:
    for lease_id, ttl in ((1, 10), (2, 10), (3, 10), (4, 100)):
        run(store.lease_grant, lease_id, ttl, START)
    for key, lease_id in ((b"a2", 1), (b"a1", 1), (b"b1", 2), (b"d1", 4), (b"plain", 0)):
        run(store.put, PutRequest(key, b"v-" + key, lease=lease_id))
    before = run(store.current_revision)
    sweeper = LeaseSweeper(store, at(START + 10.5), batch=10)
    run(sweeper.sweep)
    assert sorted(run(store.leases)) == [4]
    events = run(store.changes, before, 100)
    assert [(e.type, e.kv.key, e.kv.mod_revision) for e in events] == [
        (EventType.DELETE, b"a1", before + 1),
        (EventType.DELETE, b"a2", before + 1),
        (EventType.DELETE, b"b1", before + 2),
    ]
    assert [e.prev_kv.value for e in events] == [b"v-a1", b"v-a2", b"v-b1"]
    assert run(store.current_revision) == before + 2  # lease 3 had no keys: no revision


def test_a_sweep_never_expires_a_lease_before_its_deadline(run: Run, store: Any) -> None:
    run(store.lease_grant, 1, 10, START)
    run(LeaseSweeper(store, at(START + 9.99)).sweep)
    assert run(store.leases) == [1]


def test_a_restart_keeps_each_leases_deadline(run: Run, backend: str, reactor: Any) -> None:
    first = run(open_store, backend, reactor)
    run(first.lease_grant, 1, 10, START)
    run(first.close)
    reopened = run(open_store, backend, reactor)
    try:
        assert run(reopened.lease_time_to_live, 1, False, START + 4).ttl == 6
        assert run(reopened.expire_leases, START + 9.5, 10) == []
        assert run(reopened.expire_leases, START + 10.5, 10) == [1]
    finally:
        run(reopened.close)


def test_sweepers_of_several_servers_revoke_each_lease_once(run: Run, backend: str, reactor: Any) -> None:
    stores = [run(open_store, backend, reactor) for _ in range(3)]
    try:
        leases = list(range(1, 31))
        for lease_id in leases:
            run(stores[0].lease_grant, lease_id, 5, START)
            run(stores[0].put, PutRequest(b"key-%02d" % lease_id, b"v", lease=lease_id))
        before = run(stores[0].current_revision)
        clock = at(START + 6)
        sweepers = [LeaseSweeper(store, clock, batch=100) for store in stores]

        def sweep_together() -> Any:
            return DeferredList([sweeper.sweep() for sweeper in sweepers])

        run(sweep_together, timeout=120)
        assert run(stores[1].leases) == []
        assert run(stores[2].current_revision) == before + len(leases)  # no double revocation
        events = run(stores[0].changes, before, 1000)
        assert sorted((e.kv.mod_revision, e.type) for e in events) == [
            (revision, EventType.DELETE) for revision in range(before + 1, before + 31)
        ]
        assert sorted(e.kv.key for e in events) == [b"key-%02d" % lease_id for lease_id in leases]
    finally:
        for store in stores:
            run(store.close)
