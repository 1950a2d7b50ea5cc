"""Compaction: etcd's rules for the revision, reads around it, and the rows it deletes."""

from __future__ import annotations

import time
from typing import Any

import pytest

from k8s_sql.store.errors import Compacted, FutureRevision
from k8s_sql.store.model import DeleteRangeRequest, EventType, KeyValue, PutRequest, RangeRequest, TxnRequest
from k8s_sql.store.schema import COMPACT_ROW
from k8s_sql.store.session import Session


def log_rows(run: Any, store: Any) -> list[tuple[int, bytes, int]]:
    """(revision, key, deleted) of every log row."""

    def query(session: Session) -> list[tuple]:
        return session.all("SELECT revision, k, deleted FROM k8s_log ORDER BY revision, sub")

    return [(revision, bytes(key), deleted) for revision, key, deleted in run(store.database.read, query)]


def history(run: Any, store: Any) -> None:
    """Revisions 2-8: a 2,4,7; b 3, deleted 5; c 6, deleted 8."""
    for request in (PutRequest(b"a", b"1"), PutRequest(b"b"), PutRequest(b"a", b"2")):
        run(store.put, request)
    run(store.delete_range, DeleteRangeRequest(b"b"))
    run(store.put, PutRequest(b"c"))
    run(store.put, PutRequest(b"a", b"3"))
    run(store.delete_range, DeleteRangeRequest(b"c"))


def test_compaction_revisions_follow_etcd(run: Any, store: Any) -> None:
    # etcd 3.5.1: a fresh store compacts at 0 and 1, but not twice at the same revision.
    assert run(store.compact, 0, False) == 1
    assert run(store.compact, 1, False) == 1
    with pytest.raises(Compacted) as again:
        run(store.compact, 1, False)
    assert again.value.compact_revision == 1
    with pytest.raises(FutureRevision):
        run(store.compact, 2, False)
    assert run(store.compact_revision) == 1


def test_reads_at_the_compaction_revision_work_and_below_fail(run: Any, store: Any) -> None:
    history(run, store)
    assert run(store.compact, 4, True) == 8
    assert run(store.range, RangeRequest(b"a", revision=4)).kvs == (KeyValue(b"a", 2, 4, 2, b"2"),)
    with pytest.raises(Compacted) as compacted:
        run(store.range, RangeRequest(b"a", revision=3))
    assert compacted.value.compact_revision == 4
    with pytest.raises(Compacted):
        run(store.changes, 3, 10)
    assert [event.kv.mod_revision for event in run(store.changes, 4, 10)] == [5, 6, 7, 8]


def test_physical_compaction_keeps_what_reads_at_or_after_it_need(run: Any, store: Any) -> None:
    history(run, store)
    before = {at: run(store.range, RangeRequest(b"\0", b"\0", revision=at)) for at in range(5, 9)}
    events = run(store.changes, 5, 100)
    run(store.compact, 5, True)
    # a@2 is superseded by a@4 and b@3 by b's tombstone at 5, which stays (a watch from 5
    # must see it); c@6 (after 5) stays.
    assert log_rows(run, store) == [(4, b"a", 0), (5, b"b", 1), (6, b"c", 0), (7, b"a", 0), (8, b"c", 1)]
    assert {at: run(store.range, RangeRequest(b"\0", b"\0", revision=at)) for at in range(5, 9)} == before
    assert run(store.changes, 5, 100) == events
    run(store.compact, 8, True)
    # The tombstone at 5 goes with the next compaction; the one at 8 stays for now.
    assert log_rows(run, store) == [(7, b"a", 0), (8, b"c", 1)]
    assert run(store.range, RangeRequest(b"\0", b"\0")).kvs == (KeyValue(b"a", 2, 7, 3, b"3"),)


def test_a_watch_from_the_compaction_revision_gets_its_delete(run: Any, store: Any) -> None:
    """A delete at the compaction revision reaches a watch from it (etcd-io/etcd#18089, fixed
    in etcd 3.5.15), without prev_kv, as etcd, whose revision before is compacted."""
    history(run, store)
    run(store.compact, 5, True)
    [first, *rest] = run(store.changes, 4, 100, True)
    assert (first.type, first.kv, first.prev_kv) == (EventType.DELETE, KeyValue(b"b", mod_revision=5), None)
    assert [event.kv.mod_revision for event in rest] == [6, 7, 8]
    assert rest[-1].prev_kv is not None


def test_versions_of_one_key_in_one_revision(run: Any, store: Any) -> None:
    run(store.put, PutRequest(b"q", b"0"))
    run(store.txn, TxnRequest(success=(TxnRequest(success=(PutRequest(b"q", b"1"),)), TxnRequest(success=(DeleteRangeRequest(b"q"),)))))
    run(store.put, PutRequest(b"r"))
    run(store.compact, 3, True)
    assert log_rows(run, store) == [(3, b"q", 1), (4, b"r", 0)]  # the tombstone at 3 waits for the next compaction


def test_an_interrupted_compaction_survives_a_restart_and_resumes(run: Any, store: Any, opener: Any) -> None:
    history(run, store)

    def crash_after_the_logical_step(session: Session) -> None:
        session.run("UPDATE k8s_meta SET value = 5 WHERE name = ?", COMPACT_ROW)

    run(store.database.write, crash_after_the_logical_step)
    run(store.close)
    reopened = opener()
    assert run(reopened.compact_revision) == 5
    with pytest.raises(Compacted):
        run(reopened.range, RangeRequest(b"a", revision=4))
    deadline = time.monotonic() + 20
    while log_rows(run, reopened) != [(4, b"a", 0), (5, b"b", 1), (6, b"c", 0), (7, b"a", 0), (8, b"c", 1)]:
        assert time.monotonic() < deadline, "the compaction did not resume"
        time.sleep(0.05)


def test_large_compactions_run_in_bounded_steps(run: Any, opener: Any) -> None:
    store = opener(compaction_batch=7)
    run(store.txn, TxnRequest(success=tuple(PutRequest(b"%03d" % index) for index in range(50))))
    for round_ in range(3):
        for index in range(0, 50, 2):
            run(store.put, PutRequest(b"%03d" % index, b"%d" % round_))
    run(store.delete_range, DeleteRangeRequest(b"000", b"010"))
    current = run(store.current_revision)
    run(store.compact, current, True)
    rows = log_rows(run, store)
    assert len([row for row in rows if not row[2]]) == 40
    assert [(revision, deleted) for revision, _, deleted in rows if deleted] == [(current, 1)] * 10  # at the compaction
    assert run(store.range, RangeRequest(b"\0", b"\0", count_only=True)).count == 40
