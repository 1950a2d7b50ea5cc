"""``IBulkLoad`` on every backend: a loaded snapshot reads, writes, watches and compacts as
if its keys had been written here at their revisions."""

from __future__ import annotations

from typing import Any, Callable

import pytest
from zope.interface.verify import verifyObject

from k8s_sql.store.errors import Compacted, InvalidLoad, LeaseExists, LeaseNotFound, NotEmpty
from k8s_sql.store.interfaces import IBulkLoad
from k8s_sql.store.model import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    EventType,
    KeyValue,
    Lease,
    PutRequest,
    RangeRequest,
    TxnRequest,
)

Run = Callable[..., Any]
SNAPSHOT = 500
NOW = 1_000_000.0

KVS = (
    KeyValue(b"\x00bin\xff", 10, 10, 1, b"\x00\xff\x00", 0),
    KeyValue(b"/registry/pods/a", 20, 400, 7, b"pod a", 0),
    KeyValue(b"/registry/pods/b", 30, 400, 2, b"pod b", 42),
    KeyValue(b"/registry/pods/c", 300, 500, 3, b"", 42),
    KeyValue(b"\xff\xfe", 499, 499, 1, b"x" * 5000, 0),
)


def everything(run: Run, store: Any, revision: int = 0) -> tuple[KeyValue, ...]:
    return run(store.range, RangeRequest(b"\0", b"\0", revision=revision)).kvs


def load(run: Run, store: Any, kvs: tuple[KeyValue, ...] = KVS, revision: int = SNAPSHOT) -> int:
    start = run(store.begin_load, revision, False)
    run(store.load_leases, [Lease(42, 3600, NOW + 1800)])
    run(store.load_keys, kvs[:2])
    run(store.load_keys, kvs[2:])
    return start


def test_the_store_provides_bulk_load(store: Any) -> None:
    assert verifyObject(IBulkLoad, store)


def test_loaded_keys_read_back_with_their_revisions(run: Run, store: Any) -> None:
    assert load(run, store) == SNAPSHOT
    assert run(store.current_revision) == SNAPSHOT
    assert run(store.compact_revision) == SNAPSHOT
    assert everything(run, store) == KVS
    assert everything(run, store, revision=SNAPSHOT) == KVS
    assert run(store.range, RangeRequest(b"/registry/", b"/registry0", limit=1)).count == 3
    with pytest.raises(Compacted):
        everything(run, store, revision=SNAPSHOT - 1)
    ttl = run(store.lease_time_to_live, 42, True, NOW)
    assert (ttl.ttl, ttl.granted_ttl, ttl.keys) == (1800, 3600, (b"/registry/pods/b", b"/registry/pods/c"))


def test_writes_after_a_load_continue_each_keys_history(run: Run, store: Any) -> None:
    load(run, store)
    guarded = TxnRequest(
        compare=(Compare(CompareTarget.MOD, CompareResult.EQUAL, b"/registry/pods/a", 400),),
        success=(PutRequest(b"/registry/pods/a", b"pod a v8"),),
    )
    assert run(store.txn, guarded).succeeded
    run(store.delete_range, DeleteRangeRequest(b"\x00bin\xff"))
    run(store.put, PutRequest(b"/registry/pods/new", b"n"))
    assert run(store.current_revision) == SNAPSHOT + 3
    events = run(store.changes, SNAPSHOT, 100)
    assert [(e.type, e.kv.key, e.kv.mod_revision) for e in events] == [
        (EventType.PUT, b"/registry/pods/a", 501),
        (EventType.DELETE, b"\x00bin\xff", 502),
        (EventType.PUT, b"/registry/pods/new", 503),
    ]
    assert events[0].kv == KeyValue(b"/registry/pods/a", 20, 501, 8, b"pod a v8", 0)
    assert events[0].prev_kv == KVS[1]
    assert events[1].prev_kv == KVS[0]
    assert everything(run, store, revision=SNAPSHOT) == KVS


def test_revoking_a_loaded_lease_deletes_its_loaded_keys(run: Run, store: Any) -> None:
    load(run, store)
    assert run(store.lease_revoke, 42) == SNAPSHOT + 1
    assert [kv.key for kv in everything(run, store)] == [KVS[0].key, KVS[1].key, KVS[4].key]
    assert [e.prev_kv for e in run(store.changes, SNAPSHOT, 100)] == [KVS[2], KVS[3]]


def test_compaction_after_a_load_keeps_the_live_keys(run: Run, store: Any) -> None:
    load(run, store)
    run(store.put, PutRequest(b"/registry/pods/a", b"pod a v8"))
    run(store.put, PutRequest(b"/registry/pods/a", b"pod a v9"))
    run(store.compact, SNAPSHOT + 2, True)
    assert everything(run, store, revision=SNAPSHOT + 2) == everything(run, store)
    assert [kv.version for kv in everything(run, store)] == [1, 9, 2, 3, 1]
    assert everything(run, store)[1].create_revision == 20


def test_keys_sharing_a_revision_may_come_in_several_batches(run: Run, store: Any) -> None:
    run(store.begin_load, 9, False)
    batches = [[KeyValue(b"k%03d" % (10 * batch + i), 9, 9, 1, b"v") for i in range(10)] for batch in range(3)]
    for batch in batches:
        run(store.load_keys, batch)
    run(store.put, PutRequest(b"k000", b"w"))
    assert len(everything(run, store)) == 30
    assert run(store.changes, 9, 10)[0].prev_kv == batches[0][0]


def test_a_store_with_keys_or_leases_is_refused_unless_replaced(run: Run, store: Any) -> None:
    run(store.put, PutRequest(b"old", b"v"))
    for _ in range(5):
        run(store.put, PutRequest(b"old", b"v"))
    with pytest.raises(NotEmpty):
        run(store.begin_load, 3, False)
    run(store.delete_range, DeleteRangeRequest(b"old"))
    run(store.lease_grant, 7, 60, NOW)
    with pytest.raises(NotEmpty):
        run(store.begin_load, 3, False)
    # The revision never goes back: the higher of the two is kept.
    assert run(store.begin_load, 3, True) == 8
    assert run(store.leases) == []
    run(store.load_keys, [KeyValue(b"new", 2, 3, 2, b"n")])
    assert everything(run, store) == (KeyValue(b"new", 2, 3, 2, b"n"),)
    assert run(store.changes, 8, 10) == ()


def test_a_store_whose_keys_were_all_deleted_takes_a_load(run: Run, store: Any) -> None:
    run(store.put, PutRequest(b"gone", b"v"))
    run(store.delete_range, DeleteRangeRequest(b"gone"))
    assert run(store.begin_load, 2, False) == 3
    with pytest.raises(Compacted):
        run(store.changes, 1, 10)


@pytest.mark.parametrize(
    "kvs",
    [
        [KeyValue(b"b", 1, 1, 1), KeyValue(b"a", 1, 1, 1)],
        [KeyValue(b"a", 1, 1, 1), KeyValue(b"a", 1, 1, 1)],
        [KeyValue(b"", 1, 1, 1)],
        [KeyValue(b"a", 0, 1, 1)],
        [KeyValue(b"a", 2, 1, 1)],
        [KeyValue(b"a", 1, SNAPSHOT + 1, 1)],
        [KeyValue(b"a", 1, 1, 0)],
    ],
    ids=["descending", "twice", "empty key", "no create revision", "created after modified", "future", "version 0"],
)
def test_records_a_snapshot_cannot_hold_are_refused(run: Run, store: Any, kvs: list[KeyValue]) -> None:
    run(store.begin_load, SNAPSHOT, False)
    with pytest.raises(InvalidLoad):
        run(store.load_keys, kvs)
    assert everything(run, store) == ()


def test_keys_must_come_after_those_already_loaded(run: Run, store: Any) -> None:
    run(store.begin_load, SNAPSHOT, False)
    run(store.load_keys, [KeyValue(b"m", 1, 1, 1)])
    with pytest.raises(InvalidLoad):
        run(store.load_keys, [KeyValue(b"a", 1, 1, 1)])


def test_leases_must_be_loaded_once_before_their_keys(run: Run, store: Any) -> None:
    run(store.begin_load, SNAPSHOT, False)
    with pytest.raises(LeaseNotFound):
        run(store.load_keys, [KeyValue(b"a", 1, 1, 1, lease=5)])
    run(store.load_leases, [Lease(5, 10, NOW)])
    with pytest.raises(LeaseExists):
        run(store.load_leases, [Lease(5, 10, NOW)])
    with pytest.raises(LeaseExists):
        run(store.load_leases, [Lease(6, 10, NOW), Lease(6, 10, NOW)])
    with pytest.raises(InvalidLoad):
        run(store.begin_load, 0, True)
