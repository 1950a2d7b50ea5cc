"""The checks made before a request touches the database, as etcd 3.5.1 makes them.

Every case here was sent to a real etcd 3.5.1 with the same outcome.
"""

from __future__ import annotations

import pytest

from k8s_sql.store.checks import check_range, check_txn, is_read_only
from k8s_sql.store.errors import DuplicateKey, EmptyKey, InvalidSortOption, TooManyOperations
from k8s_sql.store.keys import KeyRange
from k8s_sql.store.model import Compare, DeleteRangeRequest, PutRequest, RangeRequest, SortOrder, TxnRequest


def txn(*success: object, failure: tuple = ()) -> TxnRequest:
    return TxnRequest(success=success, failure=failure)  # type: ignore[arg-type]


P, D = PutRequest, DeleteRangeRequest

ACCEPTED = [
    txn(txn(P(b"q")), txn(D(b"q"))),  # a nested delete after a nested put of the same key
    txn(D(b"a", b"\0"), P(b"b")),  # a delete to the end of the keyspace overlaps no put
    txn(D(b"c", b"a"), P(b"b")),  # nor does an empty range
    txn(txn(P(b"b"), failure=(P(b"b"),))),  # the two branches of one transaction exclude each other
    txn(P(b"a"), D(b"b")),
    txn(P(b"b"), failure=(P(b"b"),)),
]

REFUSED = [
    txn(txn(D(b"q")), txn(P(b"q"))),
    txn(P(b"b"), D(b"a", b"c")),
    txn(P(b"b"), D(b"b")),
    txn(D(b"b"), P(b"b")),
    txn(P(b"b"), txn(D(b"b"))),
    txn(P(b"b"), txn(P(b"b"))),
    txn(txn(P(b"b")), txn(failure=(P(b"b"),))),
    txn(P(b"b"), P(b"b")),
    txn(failure=(P(b"x"), P(b"x"))),  # the branch not taken is checked too
]


@pytest.mark.parametrize("request_", ACCEPTED)
def test_writes_that_etcd_accepts(request_: TxnRequest) -> None:
    check_txn(request_)


@pytest.mark.parametrize("request_", REFUSED)
def test_writes_of_one_key_twice_are_refused(request_: TxnRequest) -> None:
    with pytest.raises(DuplicateKey):
        check_txn(request_)


def test_the_widest_of_compares_and_branches_counts_against_the_limit() -> None:
    compare = Compare(0, 0, b"a")  # type: ignore[arg-type]
    with pytest.raises(TooManyOperations):
        check_txn(TxnRequest(compare=(compare,) * 129))
    check_txn(TxnRequest(compare=(compare,) * 128))
    # A nested transaction gets what its parent left: 128 - 64.
    with pytest.raises(TooManyOperations):
        check_txn(TxnRequest(compare=(compare,) * 64, success=(txn(*[RangeRequest(b"a")] * 65),)))
    check_txn(TxnRequest(compare=(compare,) * 64, success=(txn(*[RangeRequest(b"a")] * 64),)))
    with pytest.raises(TooManyOperations):
        check_txn(txn(*[RangeRequest(b"a")] * 3), max_ops=2)


def test_keys_are_required_everywhere() -> None:
    with pytest.raises(EmptyKey):
        check_txn(TxnRequest(compare=(Compare(0, 0, b""),)))  # type: ignore[arg-type]
    with pytest.raises(EmptyKey):
        check_txn(txn(RangeRequest(b"")))
    with pytest.raises(EmptyKey):
        check_txn(txn(failure=(txn(D(b"")),)))


def test_sort_targets_must_be_known_and_orders_need_not() -> None:
    check_range(RangeRequest(b"a", sort_order=2, sort_target=4))  # type: ignore[arg-type]
    check_txn(txn(RangeRequest(b"a", sort_order=SortOrder(3))))
    with pytest.raises(InvalidSortOption):
        check_txn(txn(RangeRequest(b"a", sort_target=5)))  # type: ignore[arg-type]


def test_read_only_transactions() -> None:
    assert is_read_only(txn(RangeRequest(b"a"), failure=(RangeRequest(b"b"),)))
    assert not is_read_only(txn(RangeRequest(b"a"), failure=(txn(RangeRequest(b"b")),)))
    assert not is_read_only(txn(failure=(D(b"a"),)))


@pytest.mark.parametrize(
    "key, range_end, inside, outside",
    [
        (b"b", b"", [b"b"], [b"a", b"b\x00", b"c"]),
        (b"b", b"\0", [b"b", b"b\x00", b"\xff"], [b"a", b"a\xff"]),
        (b"\0", b"\0", [b"\x00", b"a", b"\xff\xff"], []),
        (b"b", b"d", [b"b", b"c\xff"], [b"d", b"a"]),
        (b"d", b"b", [], [b"b", b"c", b"d"]),
    ],
)
def test_key_ranges(key: bytes, range_end: bytes, inside: list[bytes], outside: list[bytes]) -> None:
    keys = KeyRange.of(key, range_end)
    assert [k for k in inside + outside if k in keys] == inside
