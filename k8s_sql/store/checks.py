"""The checks etcd makes before it executes a request, in etcd's order.

These need no data: they refuse malformed requests (etcd's ``checkRangeRequest``,
``checkPutRequest``, ``checkTxnRequest`` and ``checkIntervals``).  Checks that need the data
(unknown lease, missing key for ``ignore_value``, compacted or future revisions) run inside
the database transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from k8s_sql.store.errors import (
    DuplicateKey,
    EmptyKey,
    InvalidSortOption,
    LeaseProvided,
    TooManyOperations,
    ValueProvided,
)
from k8s_sql.store.model import (
    DeleteRangeRequest,
    PutRequest,
    RangeRequest,
    RequestOp,
    SortTarget,
    TxnRequest,
)

DEFAULT_MAX_TXN_OPS = 128

_SORT_TARGETS = frozenset(SortTarget)


def check_range(request: RangeRequest) -> None:
    """Refuse a range without a key or with an unknown sort target (an unknown order
    is taken, as etcd takes it: ``SortOrder.UNKNOWN``)."""
    if not request.key:
        raise EmptyKey()
    if request.sort_target not in _SORT_TARGETS:
        raise InvalidSortOption()


def check_put(request: PutRequest) -> None:
    """Refuse a put without a key, or ``ignore_value``/``ignore_lease`` with a value/lease."""
    if not request.key:
        raise EmptyKey()
    if request.ignore_value and request.value:
        raise ValueProvided()
    if request.ignore_lease and request.lease:
        raise LeaseProvided()


def check_delete(request: DeleteRangeRequest) -> None:
    """Refuse a delete without a key."""
    if not request.key:
        raise EmptyKey()


def check_txn(request: TxnRequest, max_ops: int = DEFAULT_MAX_TXN_OPS) -> None:
    """Refuse a transaction that is malformed, too big, or writes a key twice in a branch.

    As etcd, the widest of the compare list and the two branches counts against
    ``max_ops``; a nested transaction gets what its parent left.
    """
    _check_txn_shape(request, max_ops)
    for branch in (request.success, request.failure):
        _Intervals.of(branch)


def is_read_only(request: TxnRequest) -> bool:
    """Whether every operation of both branches is a range (etcd's ``isTxnReadonly``)."""
    return all(isinstance(op, RangeRequest) for op in request.success + request.failure)


_CHECKS: dict[type, Callable[[Any], None]] = {
    RangeRequest: check_range,
    PutRequest: check_put,
    DeleteRangeRequest: check_delete,
}


def _check_txn_shape(request: TxnRequest, max_ops: int) -> None:
    widest = max(len(request.compare), len(request.success), len(request.failure))
    if widest > max_ops:
        raise TooManyOperations()
    if any(not compare.key for compare in request.compare):
        raise EmptyKey()
    for op in request.success + request.failure:
        if isinstance(op, TxnRequest):
            _check_txn_shape(op, max_ops - widest)
        else:
            _CHECKS[type(op)](op)


class _Intervals:
    """The keys a branch puts and the ranges it deletes (etcd's ``checkIntervals``).

    Deleted ranges are taken as etcd's interval tree takes them, literally ``[key, range_end)``:
    a delete whose ``range_end`` is ``b"\\0"`` (or not above its key) overlaps no put, exactly
    as in etcd.
    """

    def __init__(self) -> None:
        self.puts: set[bytes] = set()
        self.deletes: list[tuple[bytes, bytes]] = []

    def deleted(self, key: bytes) -> bool:
        return any(start <= key < end for start, end in self.deletes)

    @classmethod
    def of(cls, ops: tuple[RequestOp, ...]) -> _Intervals:
        here = cls()
        for op in ops:
            if isinstance(op, DeleteRangeRequest):
                here.deletes.append((op.key, op.key + b"\0" if not op.range_end else op.range_end))
        for op in ops:
            if not isinstance(op, TxnRequest):
                continue
            then, otherwise = cls.of(op.success), cls.of(op.failure)
            for key in then.puts:
                if key in here.puts or here.deleted(key):
                    raise DuplicateKey()
            for key in otherwise.puts:
                if (key in here.puts and key not in then.puts) or here.deleted(key):
                    raise DuplicateKey()
            here.puts |= then.puts | otherwise.puts
            here.deletes += then.deletes + otherwise.deletes
        for op in ops:
            if isinstance(op, PutRequest):
                if op.key in here.puts or here.deleted(op.key):
                    raise DuplicateKey()
                here.puts.add(op.key)
        return here
