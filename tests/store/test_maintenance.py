"""The store's maintenance part on every backend: HashKV, snapshots, database size, defragment, alarms."""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

import crc32c
import pytest
from zope.interface.verify import verifyObject

from k8s_sql.proto import kv_pb2
from k8s_sql.store import compaction, hashing, history
from k8s_sql.store.errors import Compacted, FutureRevision
from k8s_sql.store.interfaces import IMaintenanceStore
from k8s_sql.store.history import History, bucket_entry
from k8s_sql.store.model import (
    Alarm,
    AlarmType,
    DeleteRangeRequest,
    Lease,
    PutRequest,
    RangeRequest,
    TxnRequest,
)
from k8s_sql.store.schema import COMPACT_ROW

#: What a real etcd 3.5.1 answered to HashKV after put a=1, put b=2, delete a (revision 4):
#: at revision 1 (fresh), 2 and 4, and at 4 once compacted at 3.
ETCD_FRESH = 1084519789
ETCD_AT_2 = 2587454935
ETCD_AT_4 = 1562576432
ETCD_AT_4_COMPACTED_AT_3 = 776148148


def etcd_history(run: Callable[..., Any], store: Any) -> None:
    run(store.put, PutRequest(b"a", b"1"))
    run(store.put, PutRequest(b"b", b"2"))
    run(store.delete_range, DeleteRangeRequest(b"a"))


def test_the_store_provides_imaintenancestore(store: Any) -> None:
    assert verifyObject(IMaintenanceStore, store)


def test_hash_kv_is_etcds_value(run: Callable[..., Any], store: Any) -> None:
    fresh = run(store.hash_kv, 0)
    assert (fresh.hash, fresh.revision, fresh.compact_revision, fresh.current_revision) == (ETCD_FRESH, 1, -1, 1)
    etcd_history(run, store)
    assert run(store.hash_kv, 2).hash == ETCD_AT_2
    current = run(store.hash_kv, 0)
    assert (current.hash, current.revision, current.current_revision) == (ETCD_AT_4, 4, 4)
    run(store.compact, 3, True)
    compacted = run(store.hash_kv, 0)
    assert (compacted.hash, compacted.compact_revision) == (ETCD_AT_4_COMPACTED_AT_3, 3)


def test_hash_kv_refuses_compacted_and_future_revisions(run: Callable[..., Any], store: Any) -> None:
    etcd_history(run, store)
    with pytest.raises(FutureRevision):
        run(store.hash_kv, 5)
    run(store.compact, 3, True)
    with pytest.raises(Compacted):
        run(store.hash_kv, 2)
    assert run(store.hash_kv, 3).revision == 3  # at the compaction point is allowed, as in etcd 3.6


def test_hash_kv_does_not_depend_on_physical_compaction(run: Callable[..., Any], store: Any) -> None:
    for value in range(5):
        run(store.put, PutRequest(b"k", b"%d" % value))
        run(store.put, PutRequest(b"gone", b"%d" % value))
    run(store.delete_range, DeleteRangeRequest(b"gone"))
    logical, physical, rows = run(store.database.write, _hash_before_and_after_compaction, 9)
    assert rows[1] < rows[0]
    assert physical == logical
    assert (logical.revision, logical.compact_revision) == (12, 9)


def _hash_before_and_after_compaction(session: Any, revision: int) -> tuple[Any, Any, tuple[int, int]]:
    """In one transaction, so no background compaction interferes: compact at ``revision``,
    hash, delete the rows compaction frees, hash again."""
    session.run("UPDATE k8s_meta SET value = ? WHERE name = ?", revision, COMPACT_ROW)
    logical = hashing.hash_kv(session, 0)
    before = session.one("SELECT COUNT(*) FROM k8s_log")[0]
    while compaction.step(session, 2):
        pass
    return logical, hashing.hash_kv(session, 0), (before, session.one("SELECT COUNT(*) FROM k8s_log")[0])


def test_hash_kv_is_the_hash_of_etcds_storage_encoding(run: Callable[..., Any], store: Any) -> None:
    run(store.put, PutRequest(b"x" * 200, b"v" * 300))
    run(store.txn, TxnRequest((), (PutRequest(b"p", b""), PutRequest(b"q", b"2"))))
    run(store.delete_range, DeleteRangeRequest(b"p", b"r"))
    stored = [
        (2, 0, kv_pb2.KeyValue(key=b"x" * 200, create_revision=2, mod_revision=2, version=1, value=b"v" * 300)),
        (3, 0, kv_pb2.KeyValue(key=b"p", create_revision=3, mod_revision=3, version=1)),
        (3, 1, kv_pb2.KeyValue(key=b"q", create_revision=3, mod_revision=3, version=1, value=b"2")),
        (4, 0, kv_pb2.KeyValue(key=b"p")),
        (4, 1, kv_pb2.KeyValue(key=b"q")),
    ]
    expected = crc32c.crc32c(b"key")
    for revision, sub, kv in stored:
        tombstone = b"t" if kv.mod_revision == 0 else b""
        bucket_key = revision.to_bytes(8, "big") + b"_" + sub.to_bytes(8, "big") + tombstone
        expected = crc32c.crc32c(bucket_key + kv.SerializeToString(), expected)
    assert run(store.hash_kv, 0).hash == expected


def test_hash_kv_reads_in_batches(run: Callable[..., Any], store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for number in range(7):
        run(store.put, PutRequest(b"k%d" % number, b"v"))
    run(store.compact, 4, True)
    whole = run(store.hash_kv, 0)
    monkeypatch.setattr(history, "BATCH", 2)
    assert run(store.hash_kv, 0) == whole


def _everything(history: History) -> tuple[Any, ...]:
    return (history.revision, history.compacted, list(history.key_bucket()), list(history.leases()), history.alarms())


def test_a_snapshot_holds_the_revisions_etcd_keeps_the_leases_and_the_alarms(
    run: Callable[..., Any], store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(store.put, PutRequest(b"k", b"1"))  # 2
    run(store.put, PutRequest(b"gone", b"1"))  # 3
    run(store.delete_range, DeleteRangeRequest(b"gone"))  # 4
    run(store.compact, 4, False)
    run(store.put, PutRequest(b"k", b"2"))  # 5: k at 2 stays, as etcd's compaction at 4 kept it
    for lease in range(1, 6):
        run(store.lease_grant, lease, 10 * lease, 1000.0)
    run(store.activate_alarm, 9, AlarmType.NOSPACE)
    monkeypatch.setattr(history, "BATCH", 2)
    revision, compacted, key_bucket, leases, alarms = run(store.snapshot, _everything)
    assert (revision, compacted) == (5, 4)
    assert key_bucket == [
        bucket_entry(2, 0, b"k", 2, 1, 0, b"1", 0),
        bucket_entry(5, 0, b"k", 2, 2, 0, b"2", 0),
    ]
    assert leases == [Lease(n, 10 * n, 1000.0 + 10 * n) for n in range(1, 6)]
    assert alarms == [Alarm(9, AlarmType.NOSPACE)]


def test_a_snapshot_is_one_consistent_read(run: Callable[..., Any], store: Any, reactor: Any) -> None:
    run(store.put, PutRequest(b"k", b"1"))
    committed = threading.Event()

    def write_during_the_read(history: History) -> tuple[int, list[Any]]:
        first = list(history.key_bucket())
        reactor.callFromThread(lambda: store.put(PutRequest(b"k", b"2")).addCallback(lambda _: committed.set()))
        assert committed.wait(10)  # the put commits while this read transaction is open
        return history.revision, first + list(history.key_bucket())

    revision, rows = run(store.snapshot, write_during_the_read)
    assert revision == 2 and rows == [bucket_entry(2, 0, b"k", 2, 1, 0, b"1", 0)] * 2
    assert run(store.current_revision) == 3


def test_two_stores_on_one_database_hash_alike(run: Callable[..., Any], opener: Callable[..., Any]) -> None:
    first, second = opener(), opener()
    run(first.put, PutRequest(b"a", b"1"))
    run(second.put, PutRequest(b"b", b"2", prev_kv=True))
    assert run(first.hash_kv, 0) == run(second.hash_kv, 0)


def incompressible(size: int) -> bytes:
    """Bytes no database can compress (PostgreSQL compresses large values)."""
    return os.urandom(size)


def test_database_size_grows_with_data(run: Callable[..., Any], store: Any) -> None:
    empty = run(store.database_size)
    assert empty.total >= empty.in_use > 0
    for number in range(200):
        run(store.put, PutRequest(b"key-%d" % number, incompressible(2000)))
    _refresh_statistics(run, store)
    full = run(store.database_size)
    assert full.total >= full.in_use
    assert full.in_use > empty.in_use + 200 * 2000 // 2


def test_defragment_keeps_the_data_and_does_not_grow_the_database(run: Callable[..., Any], store: Any) -> None:
    for number in range(200):
        run(store.put, PutRequest(b"key-%d" % number, incompressible(2000)))
    run(store.put, PutRequest(b"kept", b"value"))
    deleted = run(store.delete_range, DeleteRangeRequest(b"key-", b"key."))
    run(store.compact, deleted.revision, True)
    _refresh_statistics(run, store)
    before = run(store.database_size)
    run(store.defragment)
    _refresh_statistics(run, store)
    after = run(store.database_size)
    assert after.total <= before.total
    if store.database.dialect.name == "sqlite":
        assert after.total < before.total // 2 and after.total == after.in_use
    response = run(store.range, RangeRequest(b"\0", b"\0"))
    assert [kv.key for kv in response.kvs] == [b"kept"]


def _refresh_statistics(run: Callable[..., Any], store: Any) -> None:
    """MariaDB reports sizes from table statistics: have them recomputed now."""
    if store.database.dialect.name == "mysql":
        run(store.database.maintain, _analyze)


def _analyze(connection: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE TABLE k8s_log, k8s_kv, k8s_lease, k8s_meta, k8s_revision")
        cursor.fetchall()


def test_alarms_are_raised_once_and_cleared(run: Callable[..., Any], store: Any) -> None:
    assert run(store.alarms) == []
    assert run(store.activate_alarm, 7, AlarmType.CORRUPT) == Alarm(7, AlarmType.CORRUPT)
    assert run(store.activate_alarm, 2**64 - 1, AlarmType.NOSPACE) == Alarm(2**64 - 1, AlarmType.NOSPACE)
    run(store.activate_alarm, 7, AlarmType.CORRUPT)
    run(store.activate_alarm, 3, AlarmType.CORRUPT)
    assert run(store.alarms) == [
        Alarm(2**64 - 1, AlarmType.NOSPACE),
        Alarm(3, AlarmType.CORRUPT),
        Alarm(7, AlarmType.CORRUPT),
    ]
    assert run(store.deactivate_alarm, 7, AlarmType.NOSPACE) is None
    assert run(store.deactivate_alarm, 7, AlarmType.CORRUPT) == Alarm(7, AlarmType.CORRUPT)
    assert run(store.alarms) == [Alarm(2**64 - 1, AlarmType.NOSPACE), Alarm(3, AlarmType.CORRUPT)]


def test_alarms_are_shared_by_stores_on_one_database(run: Callable[..., Any], opener: Callable[..., Any]) -> None:
    first, second = opener(), opener()
    run(first.activate_alarm, 1, AlarmType.NOSPACE)
    assert run(second.alarms) == [Alarm(1, AlarmType.NOSPACE)]
    run(second.deactivate_alarm, 1, AlarmType.NOSPACE)
    assert run(first.alarms) == []
