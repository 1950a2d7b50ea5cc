"""Reading keys as etcd does, at the current revision or any retained one.

Current reads are range scans of ``k8s_kv``'s primary key.  A read at an older revision N
starts from the same scan and corrects it with the keys of the range changed after N,
found in ``k8s_log`` by revision: the first change of each after N points at the key's
version as of N.  Its cost grows with the changes made since N, not with history or with
the number of other keys, which suits Kubernetes' paginated lists pinned to a recent revision.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from typing import Any

from k8s_sql.store.errors import Compacted, FutureRevision
from k8s_sql.store.keys import KeyRange
from k8s_sql.store.model import (
    Compare,
    CompareResult,
    CompareTarget,
    KeyValue,
    RangeRequest,
    RangeResponse,
    SortOrder,
    SortTarget,
)
from k8s_sql.store.session import Session

#: The SQL condition selecting each shape of key range, on column ``k`` of table ``{t}``.
WHERE = {"one": "{t}k = ?", "from": "{t}k >= ?", "between": "{t}k >= ? AND {t}k < ?"}

#: The current revision and the last compaction, read together.
#: A limit at least this large reads the whole range: it keeps ``limit + 1`` (and the keys
#: changed since a past revision, added to it) within SQL's 64-bit integers.  etcd's own
#: ``limit + 1`` wraps around to "no limit" for 2**63 - 1.
_LIMIT_CAP = 2**62

HEADER = "SELECT r.revision, m.value FROM k8s_revision r, k8s_meta m WHERE r.id = 1 AND m.name = 'compact_revision'"

SELECT_KV = "SELECT k, create_revision, mod_revision, version, lease, sub{value} FROM k8s_kv WHERE {where} ORDER BY k"
CURRENT = {
    (shape, values, limited): SELECT_KV.format(value=", value" if values else "", where=where.format(t=""))
    + (" LIMIT ?" if limited else "")
    for shape, where in WHERE.items()
    for values in (True, False)
    for limited in (True, False)
}
COUNT = {shape: f"SELECT COUNT(*) FROM k8s_kv WHERE {where.format(t='')}" for shape, where in WHERE.items()}
_HISTORY = (
    "SELECT c.k, c.deleted, c.prev_revision, p.create_revision, p.version, p.lease, p.value FROM k8s_log c"
    " LEFT JOIN k8s_log p ON p.revision = c.prev_revision AND p.sub = c.prev_sub"
    " WHERE c.revision > ? AND {where} ORDER BY c.revision, c.sub"
)
HISTORY = {shape: _HISTORY.format(where=where.format(t="c.")) for shape, where in WHERE.items()}


def current_row(row: tuple) -> tuple[KeyValue, int]:
    """A ``CURRENT`` row as the key's version and the ``sub`` of its log row."""
    value = row[6] if len(row) > 6 else b""
    return KeyValue(row[0], row[1], row[2], row[3], value, row[4]), row[5]


class Reader:
    """Reads keys inside one database transaction.

    ``revision`` is the revision ``k8s_kv`` holds (a writer raises it as it writes);
    ``compacted`` the last compaction, -1 when there was none.
    """

    def __init__(self, session: Session, revision: int, compacted: int) -> None:
        self.session = session
        self.revision = revision
        self.compacted = compacted

    @classmethod
    def snapshot(cls, session: Session) -> Reader:
        """A reader of the data ``session``'s read-only transaction sees."""
        if session.snapshot is None:
            session.snapshot = session.row(HEADER)
        revision, compacted = session.snapshot
        return cls(session, revision, compacted)

    def compacted_error(self) -> Compacted:
        """The error for a revision older than the last compaction."""
        return Compacted(max(self.compacted, 0))

    def range(self, request: RangeRequest, header: int) -> RangeResponse:
        """Run a range as etcd's applier does; ``header`` is the revision to report."""
        at = request.revision
        if at > self.revision:
            raise FutureRevision()
        if at <= 0:
            at = self.revision
        if at < self.compacted:
            raise self.compacted_error()
        keys = KeyRange.of(request.key, request.range_end)
        if request.count_only:
            return RangeResponse(header, count=self.count(keys, at))
        order, target = request.sort_order, request.sort_target
        filtered = order != SortOrder.NONE or any(
            (
                request.min_mod_revision,
                request.max_mod_revision,
                request.min_create_revision,
                request.max_create_revision,
            )
        )
        fetch = min(request.limit, _LIMIT_CAP) + 1 if request.limit > 0 and not filtered else 0
        kvs, count = self.fetch(keys, at, fetch, values=not request.keys_only or target == SortTarget.VALUE)
        kvs = [kv for kv in kvs if _passes(request, kv)]
        if target != SortTarget.KEY and order == SortOrder.NONE:
            order = SortOrder.ASCEND
        if order == SortOrder.DESCEND or (order == SortOrder.ASCEND and target != SortTarget.KEY):
            kvs.sort(key=_SORT_KEYS[target], reverse=order == SortOrder.DESCEND)
        more = 0 < request.limit < len(kvs)
        if more:
            del kvs[request.limit :]
        if request.keys_only:
            kvs = [dataclasses.replace(kv, value=b"") for kv in kvs]
        return RangeResponse(header, tuple(kvs), more, count)

    def fetch(self, keys: KeyRange, at: int, limit: int, values: bool = True) -> tuple[list[KeyValue], int]:
        """The first ``limit`` keys of the range as of revision ``at`` (all for 0), and the range's size."""
        if at >= self.revision:
            rows = self._current(keys, limit, values)
            complete = keys.single or not limit or len(rows) < limit
            return rows, len(rows) if complete else self._count(keys)
        states, present = self._history(keys, at)
        rows = self._current(keys, limit + present if limit else 0, values)
        kvs = sorted(
            [kv for kv in rows if kv.key not in states] + [kv for kv in states.values() if kv is not None],
            key=_key,
        )
        if not limit or len(rows) < limit + present:
            count = len(kvs)
        else:
            count = self._count(keys) - present + sum(kv is not None for kv in states.values())
        return kvs[:limit] if limit else kvs, count

    def count(self, keys: KeyRange, at: int) -> int:
        """How many keys the range holds as of revision ``at``."""
        if at >= self.revision:
            return self._count(keys)
        states, present = self._history(keys, at)
        return self._count(keys) - present + sum(kv is not None for kv in states.values())

    def compare(self, compare: Compare) -> bool:
        """Whether every key in the compare's range passes it (etcd's ``applyCompare``)."""
        kvs, _ = self.fetch(
            KeyRange.of(compare.key, compare.range_end), self.revision, 0, compare.target == CompareTarget.VALUE
        )
        if not kvs:
            return compare.target != CompareTarget.VALUE and _holds(compare, KeyValue(compare.key))
        return all(_holds(compare, kv) for kv in kvs)

    def lease_exists(self, lease: int) -> bool:
        """Whether lease ``lease`` exists."""
        return self.session.one("SELECT 1 FROM k8s_lease WHERE id = ?", lease) is not None

    def _current(self, keys: KeyRange, limit: int, values: bool) -> list[KeyValue]:
        statement = CURRENT[keys.shape, values, bool(limit)]
        params = keys.params + ((limit,) if limit else ())
        return [current_row(row)[0] for row in self.session.all(statement, *params)]

    def _count(self, keys: KeyRange) -> int:
        return self.session.row(COUNT[keys.shape], *keys.params)[0]

    def _history(self, keys: KeyRange, at: int) -> tuple[dict[bytes, KeyValue | None], int]:
        """The keys of the range changed after ``at`` with their versions as of ``at``, and
        how many of those keys exist now."""
        states: dict[bytes, KeyValue | None] = {}
        deleted: dict[bytes, bool] = {}
        for key, gone, prev, create, version, lease, value in self.session.all(HISTORY[keys.shape], at, *keys.params):
            if key not in states:
                states[key] = KeyValue(key, create, prev, version, value, lease) if prev else None
            deleted[key] = bool(gone)
        return states, sum(not gone for gone in deleted.values())


def _key(kv: KeyValue) -> bytes:
    return kv.key


_SORT_KEYS: dict[SortTarget, Callable[[KeyValue], Any]] = {
    SortTarget.KEY: _key,
    SortTarget.VERSION: lambda kv: kv.version,
    SortTarget.CREATE: lambda kv: kv.create_revision,
    SortTarget.MOD: lambda kv: kv.mod_revision,
    SortTarget.VALUE: lambda kv: kv.value,
}


def _passes(request: RangeRequest, kv: KeyValue) -> bool:
    """Whether ``kv`` passes the request's revision filters (0 = no filter)."""
    return (
        (not request.max_mod_revision or kv.mod_revision <= request.max_mod_revision)
        and (not request.min_mod_revision or kv.mod_revision >= request.min_mod_revision)
        and (not request.min_create_revision or kv.create_revision >= request.min_create_revision)
        and (not request.max_create_revision or kv.create_revision <= request.max_create_revision)
    )


_FIELDS = {
    CompareTarget.VERSION: "version",
    CompareTarget.CREATE: "create_revision",
    CompareTarget.MOD: "mod_revision",
    CompareTarget.LEASE: "lease",
}


_RELATIONS: dict[CompareResult, Callable[[Any, Any], bool]] = {
    CompareResult.EQUAL: operator.eq,
    CompareResult.NOT_EQUAL: operator.ne,
    CompareResult.GREATER: operator.gt,
    CompareResult.LESS: operator.lt,
}


def _holds(compare: Compare, kv: KeyValue) -> bool:
    """etcd's ``compareKV``: an operand of the wrong type compares as zero or empty, and an
    unknown relation holds."""
    if compare.target == CompareTarget.VALUE:
        actual: object = kv.value
        operand: object = compare.operand if isinstance(compare.operand, bytes) else b""
    else:
        actual = getattr(kv, _FIELDS[compare.target])
        operand = compare.operand if isinstance(compare.operand, int) else 0
    relation = _RELATIONS.get(compare.result)
    return True if relation is None else relation(actual, operand)
