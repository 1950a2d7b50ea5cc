"""Leases as rows: grant, keep-alive, time to live, revoke and expiry."""

from __future__ import annotations

from typing import Any

import pytest

from k8s_sql.store.errors import LeaseExists, LeaseNotFound, LeaseTTLTooLarge
from k8s_sql.store.model import Event, EventType, KeyValue, Lease, LeaseTimeToLive, PutRequest, RangeRequest


def test_grant(run: Any, store: Any) -> None:
    assert run(store.lease_grant, 7, 10, 100.0) == Lease(7, 10, 110.0)
    with pytest.raises(LeaseExists):
        run(store.lease_grant, 7, 10, 100.0)
    with pytest.raises(LeaseTTLTooLarge):
        run(store.lease_grant, 8, 9_000_000_001, 100.0)
    picked = {run(store.lease_grant, 0, 10, 100.0).id for _ in range(5)}
    assert len(picked) == 5 and all(0 < lease_id < 2**63 for lease_id in picked)
    assert run(store.leases) == sorted(picked | {7})
    assert run(store.current_revision) == 1


def test_time_to_live_is_truncated_as_etcds(run: Any, store: Any) -> None:
    run(store.lease_grant, 7, 10, 100.0)
    run(store.put, PutRequest(b"b", lease=7))
    run(store.put, PutRequest(b"a", lease=7))
    assert run(store.lease_time_to_live, 7, True, 100.3) == LeaseTimeToLive(7, 9, 10, (b"a", b"b"))
    assert run(store.lease_time_to_live, 7, False, 109.99) == LeaseTimeToLive(7, 0, 10)
    assert run(store.lease_time_to_live, 7, True, 110.5) == LeaseTimeToLive(7, -1)
    assert run(store.lease_time_to_live, 8, True, 100.0) == LeaseTimeToLive(8, -1)


def test_renew_restarts_the_ttl_unless_expired(run: Any, store: Any) -> None:
    run(store.lease_grant, 7, 10, 100.0)
    assert run(store.lease_renew, 7, 105.0) == 10
    assert run(store.lease_time_to_live, 7, False, 105.0).ttl == 10
    assert run(store.lease_renew, 7, 115.5) == 0
    assert run(store.lease_renew, 8, 100.0) == 0


def test_revoke_deletes_the_keys_in_one_revision_in_key_order(run: Any, store: Any) -> None:
    run(store.lease_grant, 7, 10, 100.0)
    run(store.put, PutRequest(b"lb", b"1", lease=7))
    run(store.put, PutRequest(b"la", b"2", lease=7))
    run(store.put, PutRequest(b"other"))
    assert run(store.lease_revoke, 7) == 5
    assert run(store.changes, 4, 10) == (
        Event(EventType.DELETE, KeyValue(b"la", mod_revision=5), KeyValue(b"la", 3, 3, 1, b"2", 7)),
        Event(EventType.DELETE, KeyValue(b"lb", mod_revision=5), KeyValue(b"lb", 2, 2, 1, b"1", 7)),
    )
    assert [kv.key for kv in run(store.range, RangeRequest(b"\0", b"\0")).kvs] == [b"other"]
    with pytest.raises(LeaseNotFound):
        run(store.lease_revoke, 7)
    assert run(store.leases) == []


def test_revoking_a_lease_without_keys_takes_no_revision(run: Any, store: Any) -> None:
    run(store.lease_grant, 7, 10, 100.0)
    assert run(store.lease_revoke, 7) == 1
    assert run(store.current_revision) == 1


def test_expiry_revokes_each_expired_lease_once(run: Any, store: Any) -> None:
    for lease_id, ttl in ((1, 5), (2, 10), (3, 20)):
        run(store.lease_grant, lease_id, ttl, 100.0)
        run(store.put, PutRequest(b"k%d" % lease_id, lease=lease_id))
    assert run(store.expire_leases, 105.0, 10) == []
    assert run(store.expire_leases, 111.0, 1) == [1]
    assert run(store.expire_leases, 111.0, 10) == [2]
    assert run(store.expire_leases, 111.0, 10) == []
    assert run(store.leases) == [3]
    assert [kv.key for kv in run(store.range, RangeRequest(b"\0", b"\0")).kvs] == [b"k3"]
    assert run(store.current_revision) == 6


def test_deadlines_survive_a_restart(run: Any, store: Any, opener: Any) -> None:
    run(store.lease_grant, 7, 60, 100.0)
    run(store.close)
    reopened = opener()
    assert run(reopened.expire_leases, 150.0, 10) == []
    assert run(reopened.lease_time_to_live, 7, False, 150.0) == LeaseTimeToLive(7, 10, 60)
