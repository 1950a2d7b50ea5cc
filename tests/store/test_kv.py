"""etcd's KV semantics, on every backend: ranges, puts, deletes and transactions.

Expectations marked "etcd 3.5.1" were observed on the real server with the same requests.
"""

from __future__ import annotations

from typing import Any

import pytest

from k8s_sql.store.errors import (
    Compacted,
    EmptyKey,
    FutureRevision,
    InvalidSortOption,
    KeyNotFound,
    LeaseNotFound,
    LeaseProvided,
    RequestTooLarge,
    TooManyOperations,
    ValueProvided,
)
from k8s_sql.store.model import (
    Compare,
    CompareResult as R,
    CompareTarget as T,
    DeleteRangeRequest,
    DeleteRangeResponse,
    KeyValue,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    SortOrder,
    SortTarget,
    TxnRequest,
    TxnResponse,
)


def put(run: Any, store: Any, key: bytes, value: bytes = b"v", **options: Any) -> PutResponse:
    return run(store.put, PutRequest(key, value, **options))


def keys(response: RangeResponse) -> list[bytes]:
    return [kv.key for kv in response.kvs]


def test_a_fresh_store_is_at_revision_one_and_the_first_write_takes_two(run: Any, store: Any) -> None:
    assert run(store.range, RangeRequest(b"a")) == RangeResponse(revision=1)
    assert run(store.current_revision) == 1
    assert put(run, store, b"a") == PutResponse(revision=2)


def test_revisions_and_cluster_id_survive_a_restart(run: Any, store: Any, opener: Any) -> None:
    put(run, store, b"a")
    put(run, store, b"b")
    run(store.delete_range, DeleteRangeRequest(b"b"))
    reopened = opener()
    assert reopened.cluster_id == store.cluster_id > 0
    assert run(reopened.current_revision) == 4
    assert put(run, reopened, b"c").revision == 5


def test_keys_are_arbitrary_bytes_ordered_as_etcd_orders_them(run: Any, store: Any) -> None:
    stored = [b"\xff\xff", b"a\x00", b"\x00", b"a", b"a\xff", b"\xff", b"a \x00", b"a "]
    for key in stored:
        put(run, store, key, key * 3)
    everything = run(store.range, RangeRequest(b"\0", b"\0"))
    assert keys(everything) == sorted(stored)
    assert [kv.value for kv in everything.kvs] == [key * 3 for key in sorted(stored)]
    assert keys(run(store.range, RangeRequest(b"a"))) == [b"a"]
    assert keys(run(store.range, RangeRequest(b"a", b"b"))) == [b"a", b"a\x00", b"a ", b"a \x00", b"a\xff"]


def test_range_end_conventions(run: Any, store: Any) -> None:
    for key in (b"a", b"b", b"c"):
        put(run, store, key)
    assert keys(run(store.range, RangeRequest(b"b"))) == [b"b"]
    assert keys(run(store.range, RangeRequest(b"b", b"\0"))) == [b"b", b"c"]
    assert keys(run(store.range, RangeRequest(b"\0", b"\0"))) == [b"a", b"b", b"c"]
    assert keys(run(store.range, RangeRequest(b"a", b"c"))) == [b"a", b"b"]
    assert run(store.range, RangeRequest(b"c", b"a")) == RangeResponse(revision=4, count=0)


def test_limit_more_and_count(run: Any, store: Any) -> None:
    for key in (b"a", b"b", b"c", b"d"):
        put(run, store, key)
    page = run(store.range, RangeRequest(b"a", b"z", limit=2))
    assert (keys(page), page.more, page.count) == ([b"a", b"b"], True, 4)
    last = run(store.range, RangeRequest(b"c", b"z", limit=2))
    assert (keys(last), last.more, last.count) == ([b"c", b"d"], False, 2)
    assert run(store.range, RangeRequest(b"a", b"z", limit=-1)).count == 4


def test_count_ignores_limit_and_filters_as_etcd(run: Any, store: Any) -> None:
    for key, value in [(b"a", b"3"), (b"b", b"1"), (b"c", b"2"), (b"a", b"1"), (b"d", b"0")]:
        put(run, store, key, value)
    # etcd 3.5.1: kvs a only, more, count 4
    filtered = run(store.range, RangeRequest(b"a", b"z", min_mod_revision=5, limit=1))
    assert (keys(filtered), filtered.more, filtered.count) == ([b"a"], True, 4)
    # etcd 3.5.1: kvs b only, count 4
    assert run(store.range, RangeRequest(b"a", b"z", max_mod_revision=3)) == RangeResponse(
        6, (KeyValue(b"b", 3, 3, 1, b"1"),), False, 4
    )
    assert run(store.range, RangeRequest(b"a", b"z", count_only=True, limit=1, min_mod_revision=6)) == RangeResponse(6, count=4)


def test_keys_only_and_count_only(run: Any, store: Any) -> None:
    put(run, store, b"a", b"value", lease=0)
    assert run(store.range, RangeRequest(b"a", keys_only=True)).kvs == (KeyValue(b"a", 2, 2, 1, b""),)
    assert run(store.range, RangeRequest(b"a", b"b", count_only=True)) == RangeResponse(2, count=1)


def test_sorting(run: Any, store: Any) -> None:
    for key, value in [(b"a", b"3"), (b"b", b"1"), (b"c", b"2"), (b"a", b"1"), (b"d", b"0")]:
        put(run, store, key, value)
    by = lambda target, order, **kw: keys(run(store.range, RangeRequest(b"a", b"z", sort_target=target, sort_order=order, **kw)))
    assert by(SortTarget.KEY, SortOrder.DESCEND) == [b"d", b"c", b"b", b"a"]
    assert by(SortTarget.KEY, SortOrder.DESCEND, limit=2) == [b"d", b"c"]
    assert by(SortTarget.VALUE, SortOrder.ASCEND) == [b"d", b"a", b"b", b"c"]
    assert by(SortTarget.VALUE, SortOrder.DESCEND) == [b"c", b"a", b"b", b"d"]
    assert by(SortTarget.VERSION, SortOrder.DESCEND) == [b"a", b"b", b"c", b"d"]
    assert by(SortTarget.CREATE, SortOrder.DESCEND) == [b"d", b"c", b"b", b"a"]
    assert by(SortTarget.MOD, SortOrder.ASCEND) == [b"b", b"c", b"a", b"d"]
    # etcd 3.5.1: sorting first, then the limit...
    assert by(SortTarget.VALUE, SortOrder.ASCEND, limit=2) == [b"d", b"a"]
    # ...but a target without an order sorts only the page read by key order: a, b.
    assert by(SortTarget.VALUE, SortOrder.NONE, limit=2) == [b"a", b"b"]
    # An order etcd does not know: no sort, but the limit cuts the whole range, as etcd 3.5.
    assert by(SortTarget.VALUE, SortOrder(7), limit=3) == [b"a", b"b", b"c"]


def test_the_largest_limit_reads_everything(run: Any, store: Any) -> None:
    """A limit of 2**63 - 1 (limit + 1 overflowed SQL's int64) returns every key, as etcd."""
    for key in (b"a", b"b", b"c"):
        put(run, store, key, b"v")
    put(run, store, b"a", b"w")
    for revision in (0, 4):
        response = run(store.range, RangeRequest(b"a", b"z", limit=2**63 - 1, revision=revision))
        assert (keys(response), response.more, response.count) == ([b"a", b"b", b"c"], False, 3)


def test_malformed_ranges_are_refused(run: Any, store: Any) -> None:
    with pytest.raises(EmptyKey):
        run(store.range, RangeRequest(b""))
    with pytest.raises(InvalidSortOption):
        run(store.range, RangeRequest(b"a", sort_target=9))  # type: ignore[arg-type]


def test_historical_reads_report_the_current_revision(run: Any, store: Any) -> None:
    put(run, store, b"a", b"1")
    put(run, store, b"b", b"1")
    put(run, store, b"a", b"2")
    run(store.delete_range, DeleteRangeRequest(b"b"))
    assert run(store.range, RangeRequest(b"a", b"z", revision=3)) == RangeResponse(
        5, (KeyValue(b"a", 2, 2, 1, b"1"), KeyValue(b"b", 3, 3, 1, b"1")), False, 2
    )
    assert run(store.range, RangeRequest(b"a", b"z", revision=1)) == RangeResponse(5)
    with pytest.raises(FutureRevision):
        run(store.range, RangeRequest(b"a", revision=6))


def test_pages_pinned_to_a_revision_ignore_later_changes(run: Any, store: Any) -> None:
    for index in range(10):
        put(run, store, b"/registry/pods/%02d" % index)
    pinned = run(store.current_revision)
    first = run(store.range, RangeRequest(b"/registry/pods/", b"/registry/pods0", limit=4))
    run(store.delete_range, DeleteRangeRequest(b"/registry/pods/02"))
    run(store.delete_range, DeleteRangeRequest(b"/registry/pods/05"))
    put(run, store, b"/registry/pods/04", b"changed")
    put(run, store, b"/registry/pods/045")
    pages, start = [first], first.kvs[-1].key + b"\0"
    while pages[-1].more:
        pages.append(run(store.range, RangeRequest(start, b"/registry/pods0", limit=4, revision=pinned)))
        start = pages[-1].kvs[-1].key + b"\0"
    assert [keys(page) for page in pages] == [
        [b"/registry/pods/%02d" % index for index in chunk] for chunk in ([0, 1, 2, 3], [4, 5, 6, 7], [8, 9])
    ]
    assert [page.count for page in pages] == [10, 6, 2]
    assert all(kv.value == b"v" for page in pages for kv in page.kvs)


def test_put_keeps_the_generation_and_bumps_the_version_even_for_the_same_value(run: Any, store: Any) -> None:
    put(run, store, b"a", b"same")
    assert put(run, store, b"a", b"same", prev_kv=True) == PutResponse(3, KeyValue(b"a", 2, 2, 1, b"same"))
    assert run(store.range, RangeRequest(b"a")).kvs == (KeyValue(b"a", 2, 3, 2, b"same"),)


def test_delete_ends_the_generation(run: Any, store: Any) -> None:
    put(run, store, b"a")
    put(run, store, b"a")
    assert run(store.delete_range, DeleteRangeRequest(b"a", prev_kv=True)) == DeleteRangeResponse(
        4, 1, (KeyValue(b"a", 2, 3, 2, b"v"),)
    )
    put(run, store, b"a")
    assert run(store.range, RangeRequest(b"a")).kvs == (KeyValue(b"a", 5, 5, 1, b"v"),)


def test_a_delete_of_nothing_takes_no_revision(run: Any, store: Any) -> None:
    put(run, store, b"a")
    assert run(store.delete_range, DeleteRangeRequest(b"b", b"z")) == DeleteRangeResponse(2, 0)
    assert run(store.current_revision) == 2


def test_ignore_value_and_ignore_lease(run: Any, store: Any) -> None:
    lease = run(store.lease_grant, 7, 60, 0.0)
    put(run, store, b"a", b"kept", lease=lease.id)
    put(run, store, b"a", b"", ignore_value=True)
    assert run(store.range, RangeRequest(b"a")).kvs == (KeyValue(b"a", 2, 3, 2, b"kept", 0),)
    put(run, store, b"a", b"new", ignore_lease=True)
    put(run, store, b"a", b"newer", lease=7)
    put(run, store, b"a", b"", ignore_value=True, ignore_lease=True)
    assert run(store.range, RangeRequest(b"a")).kvs == (KeyValue(b"a", 2, 6, 5, b"newer", 7),)
    with pytest.raises(KeyNotFound):
        put(run, store, b"missing", b"", ignore_value=True)
    with pytest.raises(KeyNotFound):
        put(run, store, b"missing", ignore_lease=True)
    with pytest.raises(ValueProvided):
        put(run, store, b"a", b"x", ignore_value=True)
    with pytest.raises(LeaseProvided):
        put(run, store, b"a", lease=7, ignore_lease=True)
    with pytest.raises(EmptyKey):
        put(run, store, b"")


def test_a_put_needs_its_lease_and_a_put_without_one_detaches(run: Any, store: Any) -> None:
    with pytest.raises(LeaseNotFound):
        put(run, store, b"a", lease=5)
    # etcd 3.5.1: the unknown lease is reported before the missing key.
    with pytest.raises(LeaseNotFound):
        put(run, store, b"missing", b"", ignore_value=True, lease=5)
    run(store.lease_grant, 5, 60, 0.0)
    put(run, store, b"a", lease=5)
    put(run, store, b"a")
    assert run(store.lease_time_to_live, 5, True, 0.0).keys == ()
    assert run(store.current_revision) == 3


def test_keys_beyond_the_backend_limit_are_refused_and_the_longest_key_works(run: Any, store: Any) -> None:
    limit = store.database.dialect.max_key_bytes
    longest = bytes(range(256)) * (limit // 256) + b"\xff" * (limit % 256)
    put(run, store, longest, b"v", lease=0)
    assert keys(run(store.range, RangeRequest(longest))) == [longest]
    with pytest.raises(RequestTooLarge):
        put(run, store, longest + b"x")
    with pytest.raises(RequestTooLarge):
        run(store.txn, TxnRequest(success=(TxnRequest(success=(PutRequest(longest + b"x"),)),)))


def test_values_up_to_etcds_request_limit_work(run: Any, store: Any) -> None:
    value = bytes(range(256)) * (1536 * 1024 // 256)
    put(run, store, b"big", value)
    put(run, store, b"big", value + b"!", prev_kv=True)
    assert run(store.range, RangeRequest(b"big")).kvs[0].value == value + b"!"
    assert run(store.changes, 1, 10)[1].prev_kv.value == value


def compare(target: T, result: R, operand: int | bytes, key: bytes = b"k", range_end: bytes = b"") -> Compare:
    return Compare(target, result, key, operand, range_end)


# The key b"k": create 2, mod 3, version 2, value b"m", lease 9.
COMPARES = [
    (compare(T.VERSION, R.EQUAL, 2), True),
    (compare(T.VERSION, R.GREATER, 2), False),
    (compare(T.VERSION, R.LESS, 3), True),
    (compare(T.VERSION, R.NOT_EQUAL, 2), False),
    (compare(T.CREATE, R.EQUAL, 2), True),
    (compare(T.CREATE, R.GREATER, 1), True),
    (compare(T.CREATE, R.LESS, 2), False),
    (compare(T.CREATE, R.NOT_EQUAL, 3), True),
    (compare(T.MOD, R.EQUAL, 3), True),
    (compare(T.MOD, R.GREATER, 3), False),
    (compare(T.MOD, R.LESS, 4), True),
    (compare(T.MOD, R.NOT_EQUAL, 3), False),
    (compare(T.VALUE, R.EQUAL, b"m"), True),
    (compare(T.VALUE, R.GREATER, b"l\xff"), True),
    (compare(T.VALUE, R.LESS, b"m"), False),
    (compare(T.VALUE, R.NOT_EQUAL, b"n"), True),
    (compare(T.LEASE, R.EQUAL, 9), True),
    (compare(T.LEASE, R.GREATER, 9), False),
    (compare(T.LEASE, R.LESS, 10), True),
    (compare(T.LEASE, R.NOT_EQUAL, 0), True),
    # A missing key compares as zeros, except its value, which fails every compare.
    (compare(T.VERSION, R.EQUAL, 0, b"missing"), True),
    (compare(T.CREATE, R.LESS, 1, b"missing"), True),
    (compare(T.MOD, R.EQUAL, 0, b"missing"), True),
    (compare(T.LEASE, R.EQUAL, 0, b"missing"), True),
    (compare(T.VALUE, R.EQUAL, b"", b"missing"), False),
    (compare(T.VALUE, R.NOT_EQUAL, b"q", b"missing"), False),
    # A range passes when every key in it does; an empty range compares as one missing key.
    (compare(T.MOD, R.GREATER, 1, b"j", b"l"), True),
    (compare(T.MOD, R.GREATER, 3, b"j", b"l"), False),
    (compare(T.MOD, R.GREATER, 2, b"k", b"\0"), True),
    (compare(T.VERSION, R.EQUAL, 0, b"x", b"y"), True),
    (compare(T.VALUE, R.EQUAL, b"", b"x", b"y"), False),
    # An operand of the wrong type compares as zero (etcd 3.5.1).
    (compare(T.MOD, R.EQUAL, b"zz"), False),
    (compare(T.MOD, R.GREATER, b"zz"), True),
]


def test_compares_on_every_target_with_every_relation(run: Any, store: Any) -> None:
    lease = run(store.lease_grant, 9, 60, 0.0)
    put(run, store, b"k", b"first", lease=lease.id)
    put(run, store, b"k", b"m", lease=lease.id)
    put(run, store, b"j", b"j")
    outcomes = [
        run(store.txn, TxnRequest(compare=(condition,), success=(RangeRequest(b"k"),))).succeeded
        for condition, _ in COMPARES
    ]
    assert [(condition, got) for (condition, expected), got in zip(COMPARES, outcomes) if got != expected] == []
    assert run(store.current_revision) == 4


def test_a_transaction_that_writes_nothing_takes_no_revision(run: Any, store: Any) -> None:
    put(run, store, b"a")
    failed = run(
        store.txn,
        TxnRequest(compare=(compare(T.VERSION, R.EQUAL, 5, b"a"),), success=(PutRequest(b"x"),), failure=(RangeRequest(b"a"), DeleteRangeRequest(b"zz"))),
    )
    assert failed == TxnResponse(
        2, False, (RangeResponse(2, (KeyValue(b"a", 2, 2, 1, b"v"),), False, 1), DeleteRangeResponse(2, 0))
    )
    assert run(store.txn, TxnRequest()) == TxnResponse(2, True)
    assert run(store.current_revision) == 2


def test_inner_revisions_are_etcds(run: Any, store: Any) -> None:
    put(run, store, b"a", b"1")
    put(run, store, b"b", b"2")
    a = KeyValue(b"a", 2, 2, 1, b"1")
    never = compare(T.VERSION, R.EQUAL, 5, b"a")
    response = run(
        store.txn,
        TxnRequest(
            success=(
                RangeRequest(b"a"),
                DeleteRangeRequest(b"zz"),
                PutRequest(b"c", b"3"),
                RangeRequest(b"c"),
                DeleteRangeRequest(b"zz"),
                TxnRequest(success=(RangeRequest(b"a"), PutRequest(b"d")), failure=(RangeRequest(b"b"),)),
                TxnRequest(compare=(never,), success=(PutRequest(b"e"),), failure=(RangeRequest(b"a"),)),
            )
        ),
    )
    # etcd 3.5.1, response for response; a nested transaction's header has no revision.
    assert response == TxnResponse(
        4,
        True,
        (
            RangeResponse(3, (a,), False, 1),
            DeleteRangeResponse(3, 0),
            PutResponse(4),
            RangeResponse(4, (KeyValue(b"c", 4, 4, 1, b"3"),), False, 1),
            DeleteRangeResponse(4, 0),
            TxnResponse(0, True, (RangeResponse(4, (a,), False, 1), PutResponse(4))),
            TxnResponse(0, False, (RangeResponse(4, (a,), False, 1),)),
        ),
    )


def test_nested_compares_see_the_data_before_the_transaction(run: Any, store: Any) -> None:
    response = run(
        store.txn,
        TxnRequest(
            success=(
                PutRequest(b"n", b"1"),
                TxnRequest(compare=(compare(T.VERSION, R.EQUAL, 0, b"n"),), success=(RangeRequest(b"n"),)),
            )
        ),
    )
    # etcd 3.5.1: the nested compare succeeds, and its range sees the put.
    assert response.responses[1] == TxnResponse(0, True, (RangeResponse(2, (KeyValue(b"n", 2, 2, 1, b"1"),), False, 1),))


def test_a_key_put_then_deleted_in_one_transaction(run: Any, store: Any) -> None:
    response = run(
        store.txn,
        TxnRequest(success=(TxnRequest(success=(PutRequest(b"q", b"1"),)), TxnRequest(success=(DeleteRangeRequest(b"q", prev_kv=True),)))),
    )
    # etcd 3.5.1 accepts it; the delete sees the put.
    assert response.responses[1].responses[0] == DeleteRangeResponse(2, 1, (KeyValue(b"q", 2, 2, 1, b"1"),))
    assert run(store.range, RangeRequest(b"q")) == RangeResponse(2)


def test_errors_found_by_checking_the_chosen_operations_come_first(run: Any, store: Any) -> None:
    put(run, store, b"a")
    # etcd 3.5.1: a missing key or lease is reported before a future revision, whatever
    # the order of the operations; between the two, the first operation's error wins.
    with pytest.raises(KeyNotFound):
        run(store.txn, TxnRequest(success=(RangeRequest(b"a", revision=9), PutRequest(b"missing", ignore_value=True))))
    with pytest.raises(KeyNotFound):
        run(store.txn, TxnRequest(success=(PutRequest(b"missing", ignore_value=True), PutRequest(b"k", lease=123))))
    with pytest.raises(LeaseNotFound):
        run(store.txn, TxnRequest(success=(PutRequest(b"k", lease=123), PutRequest(b"missing", ignore_value=True))))
    with pytest.raises(FutureRevision):
        run(store.txn, TxnRequest(success=(PutRequest(b"zz"), RangeRequest(b"a", revision=3))))
    run(store.compact, 2, False)
    with pytest.raises(Compacted):
        run(store.txn, TxnRequest(success=(RangeRequest(b"a", revision=1),)))
    assert run(store.current_revision) == 2


def test_a_transaction_is_all_or_nothing(run: Any, store: Any) -> None:
    put(run, store, b"a")
    put(run, store, b"b")
    # The put keeping b's lease finds b deleted earlier in the transaction: etcd 3.5 panics,
    # the store refuses the whole transaction.
    with pytest.raises(KeyNotFound):
        run(
            store.txn,
            TxnRequest(success=(PutRequest(b"c"), DeleteRangeRequest(b"a", b"\0"), PutRequest(b"b", ignore_lease=True))),
        )
    assert keys(run(store.range, RangeRequest(b"\0", b"\0"))) == [b"a", b"b"]
    assert run(store.current_revision) == 3
    assert len(run(store.changes, 0, 100)) == 2


def test_too_many_operations(run: Any, opener: Any) -> None:
    store = opener(max_txn_ops=4)
    four = tuple(PutRequest(b"%d" % index) for index in range(4))
    assert run(store.txn, TxnRequest(success=four)).revision == 2
    with pytest.raises(TooManyOperations):
        run(store.txn, TxnRequest(failure=four + (RangeRequest(b"a"),)))
