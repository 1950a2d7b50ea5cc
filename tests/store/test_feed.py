"""The change feed and commit notifications the watch follower relies on."""

from __future__ import annotations

from typing import Any

import pytest

from k8s_sql.store.errors import Compacted
from k8s_sql.store.model import DeleteRangeRequest, Event, EventType, KeyValue, PutRequest, TxnRequest


def test_events_carry_prev_kv_and_deletes_carry_only_key_and_revision(run: Any, store: Any) -> None:
    run(store.put, PutRequest(b"a", b"1", lease=0))
    run(store.put, PutRequest(b"a", b"2"))
    run(store.delete_range, DeleteRangeRequest(b"a"))
    one, two = KeyValue(b"a", 2, 2, 1, b"1"), KeyValue(b"a", 2, 3, 2, b"2")
    assert run(store.changes, 0, 10) == (
        Event(EventType.PUT, one),
        Event(EventType.PUT, two, one),
        Event(EventType.DELETE, KeyValue(b"a", mod_revision=4), two),
    )


def test_a_key_deleted_and_created_in_one_revision_has_etcds_prev_kvs(run: Any, store: Any) -> None:
    run(store.put, PutRequest(b"b", b"old"))
    old = KeyValue(b"b", 2, 2, 1, b"old")
    # etcd 3.5.1: a delete to the end of the keyspace does not conflict with a put.
    run(
        store.txn,
        TxnRequest(
            success=(
                DeleteRangeRequest(b"a", b"\0"),
                TxnRequest(success=(PutRequest(b"b", b"new"),)),
                TxnRequest(success=(DeleteRangeRequest(b"b"),)),
            )
        ),
    )
    # prev_kv is the version as of the revision before; a created key has none.
    assert run(store.changes, 2, 10) == (
        Event(EventType.DELETE, KeyValue(b"b", mod_revision=3), old),
        Event(EventType.PUT, KeyValue(b"b", 3, 3, 1, b"new")),
        Event(EventType.DELETE, KeyValue(b"b", mod_revision=3), old),
    )


def test_changes_come_in_whole_revisions(run: Any, store: Any) -> None:
    run(store.txn, TxnRequest(success=tuple(PutRequest(b"%d" % index) for index in range(5))))
    run(store.put, PutRequest(b"x"))
    run(store.put, PutRequest(b"y"))
    revisions = lambda after, limit: [event.kv.mod_revision for event in run(store.changes, after, limit)]
    assert revisions(0, 1) == [2] * 5
    assert revisions(0, 6) == [2] * 5 + [3]
    assert revisions(2, 1) == [3]
    assert revisions(4, 10) == []
    assert revisions(9, 10) == []


def test_changes_after_the_compaction_revision_are_complete(run: Any, store: Any) -> None:
    for value in (b"1", b"2", b"3"):
        run(store.put, PutRequest(b"a", value))
    run(store.compact, 3, True)
    with pytest.raises(Compacted) as compacted:
        run(store.changes, 1, 10)
    assert compacted.value.compact_revision == 3
    assert run(store.changes, 3, 10) == (
        Event(EventType.PUT, KeyValue(b"a", 2, 4, 3, b"3"), KeyValue(b"a", 2, 3, 2, b"2")),
    )


@pytest.mark.parametrize("physical", [True, False], ids=["physical", "logical"])
def test_changes_from_the_compaction_revision_are_what_etcd_keeps_of_it(run: Any, store: Any, physical: bool) -> None:
    run(store.put, PutRequest(b"a", b"1"))
    run(store.put, PutRequest(b"a", b"2"))
    run(store.put, PutRequest(b"b", b"1"))
    run(store.delete_range, DeleteRangeRequest(b"b"))
    run(store.compact, 3, physical)
    # The put at 3 without prev_kv (its version at 2 is compacted), then everything after.
    assert run(store.changes, 2, 10, True) == (
        Event(EventType.PUT, KeyValue(b"a", 2, 3, 2, b"2")),
        Event(EventType.PUT, KeyValue(b"b", 4, 4, 1, b"1")),
        Event(EventType.DELETE, KeyValue(b"b", mod_revision=5), KeyValue(b"b", 4, 4, 1, b"1")),
    )
    run(store.compact, 5, physical)
    # A deletion at the compaction revision is kept for a watch from it (etcd >= 3.5.15,
    # etcd-io/etcd#18089), without prev_kv.
    assert run(store.changes, 4, 10, True) == (Event(EventType.DELETE, KeyValue(b"b", mod_revision=5)),)
    with pytest.raises(Compacted):
        run(store.changes, 3, 10, True)
    # Without from_compaction (the watch follower), the whole revision is needed.
    with pytest.raises(Compacted):
        run(store.changes, 4, 10)


def test_local_commits_are_reported_and_observers_can_leave(run: Any, store: Any) -> None:
    seen: list[int] = []
    leave = store.notify_commits(seen.append)
    store.notify_commits(lambda revision: 1 / 0)  # a failing observer troubles no one
    run(store.put, PutRequest(b"a"))
    run(store.delete_range, DeleteRangeRequest(b"nothing"))
    run(store.txn, TxnRequest(success=(PutRequest(b"b"), PutRequest(b"c"))))
    leave()
    run(store.put, PutRequest(b"d"))
    # Every commit is reported (on PostgreSQL, once more through LISTEN/NOTIFY).
    assert set(seen) == {2, 3}
