"""Random operation sequences give the same answers from the store and from the in-memory
model of ``reference.py``, on every backend.

Keys come from a small set (with 0x00 and 0xff bytes, and keys that are prefixes of others)
so that operations collide: puts over existing keys, deletes of ranges, compares that fail,
transactions that write a key twice, historical reads after compaction, leases that expire.
``K8S_SQL_PROPERTY_EXAMPLES`` sets how many sequences each backend runs (default 40).
"""

from __future__ import annotations

import functools
import os
from typing import Any

from hypothesis import HealthCheck, given, settings, strategies as st

from k8s_sql.store.model import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    PutRequest,
    RangeRequest,
    SortOrder,
    SortTarget,
    TxnRequest,
)
from tests.store.reference import Reference
from tests.store.support import outcome, reset

KEYS = st.sampled_from([b"a", b"a\x00", b"ab", b"b", b"b\xff", b"c", b"\x00", b"\xff", b"\xff\xff"])
ENDS = st.one_of(st.just(b""), st.just(b"\0"), KEYS)
VALUES = st.one_of(st.binary(max_size=3), st.sampled_from([b"\x00", b"\xff", b"x" * 40]))
LEASES = st.sampled_from([0, 0, 0, 1, 2])


def revisions(current: int) -> st.SearchStrategy[int]:
    """Mostly recent revisions, some current (0), some in the future or long gone."""
    return st.one_of(st.just(0), st.integers(min_value=max(current - 6, -1), max_value=current + 1), st.integers(-1, 40))


puts = st.builds(
    PutRequest,
    key=KEYS,
    value=st.one_of(st.just(b""), VALUES),
    lease=LEASES,
    prev_kv=st.booleans(),
    ignore_value=st.sampled_from([False, False, False, True]),
    ignore_lease=st.sampled_from([False, False, False, True]),
)
deletes = st.builds(DeleteRangeRequest, key=KEYS, range_end=ENDS, prev_kv=st.booleans())
compares = st.builds(
    Compare,
    target=st.sampled_from(list(CompareTarget)),
    result=st.sampled_from(list(CompareResult)),
    key=KEYS,
    operand=st.one_of(st.integers(min_value=0, max_value=8), VALUES),
    range_end=st.one_of(st.just(b""), st.just(b""), ENDS),
)
fills = st.lists(KEYS, min_size=3, unique=True).map(
    lambda keys: TxnRequest(success=tuple(PutRequest(key, b"v") for key in keys))
)


def ranges(current: int) -> st.SearchStrategy[RangeRequest]:
    """Range requests of every shape, at revisions around ``current``; half of them as
    Kubernetes sends them (a page of a list, maybe pinned to a revision)."""
    pages = st.builds(
        RangeRequest,
        key=KEYS,
        range_end=st.one_of(st.just(b"\0"), ENDS),
        limit=st.sampled_from([0, 1, 1, 2, 3]),
        revision=revisions(current),
        keys_only=st.booleans(),
    )
    return pages | st.builds(
        RangeRequest,
        key=KEYS,
        range_end=st.one_of(st.just(b"\0"), ENDS),
        limit=st.sampled_from([-1, 0, 1, 1, 2, 3]),
        revision=revisions(current),
        sort_order=st.sampled_from(list(SortOrder)),
        sort_target=st.sampled_from(list(SortTarget)),
        keys_only=st.booleans(),
        count_only=st.sampled_from([False, False, True]),
        min_mod_revision=st.sampled_from([0, 0, current - 3]),
        max_mod_revision=st.sampled_from([0, 0, current - 1]),
        min_create_revision=st.sampled_from([0, 0, current - 5]),
        max_create_revision=st.sampled_from([0, 0, current - 2]),
    )


def txns(current: int, depth: int, put: st.SearchStrategy[PutRequest] = puts) -> st.SearchStrategy[TxnRequest]:
    """Transactions nested up to ``depth`` levels, with every kind of operation."""
    ops = st.one_of(put, deletes, ranges(current), *([txns(current, depth - 1, put)] if depth else []))
    branch = st.lists(ops, max_size=3).map(tuple)
    return st.builds(TxnRequest, compare=st.lists(compares, max_size=2).map(tuple), success=branch, failure=branch)


@functools.lru_cache(maxsize=None)
def operations(current: int) -> st.SearchStrategy[tuple]:
    """One operation, as (store method name, *arguments); mostly writes and reads."""
    writes = st.one_of(
        st.tuples(st.just("put"), puts),
        st.tuples(st.just("delete_range"), deletes),
        st.tuples(st.just("txn"), txns(current, 2)),
        st.tuples(st.just("txn"), fills),
    )
    reads = st.one_of(
        st.tuples(st.just("range"), ranges(current)),
        st.tuples(st.just("changes"), revisions(current), st.integers(min_value=1, max_value=4)),
    )
    others = st.one_of(
        st.tuples(st.just("compact"), revisions(current), st.booleans()),
        st.tuples(st.just("lease_grant"), st.sampled_from([0, 1, 2]), st.sampled_from([5, 30, 9_000_000_001])),
        st.tuples(st.just("lease_revoke"), st.sampled_from([1, 2, 3])),
        st.tuples(st.just("lease_renew"), st.sampled_from([1, 2, 3])),
        st.tuples(st.just("lease_time_to_live"), st.sampled_from([1, 2, 3]), st.booleans()),
        st.tuples(st.just("leases")),
        st.tuples(st.just("expire_leases"), st.integers(min_value=1, max_value=2)),
        st.tuples(st.just("tick"), st.sampled_from([0.5, 3.0, 10.0])),
    )
    return st.sampled_from(["write", "read", "read", "other"]).flatmap(
        lambda kind: {"write": writes, "read": reads, "other": others}[kind]
    )


#: Operations that take the time as their last argument (``expire_leases`` takes it first).
TIMED = {"lease_grant", "lease_renew", "lease_time_to_live"}


def direct(function: Any, *args: Any) -> Any:
    """Call the model directly, as ``run`` calls the store."""
    return function(*args)


@settings(
    max_examples=int(os.environ.get("K8S_SQL_PROPERTY_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_store_answers_as_the_model(run: Any, store: Any, data: st.DataObject) -> None:
    """Every answer, error or not, is the model's; and at the end so is the whole history."""
    reset(run, store)
    model = Reference()
    now = 1000.0
    for _ in range(data.draw(st.integers(min_value=5, max_value=40), label="steps")):
        name, *args = data.draw(operations(model.revision))
        if name == "tick":
            now += args[0]
            continue
        if name in TIMED:
            args.append(now)
        elif name == "expire_leases":
            args.insert(0, now)
        got = outcome(run, getattr(store, name), *args)
        if name == "lease_grant" and args[0] == 0 and got[0] == "ok":
            args[0] = got[1].id  # the store picked the ID: the model takes the same
        expected = outcome(direct, getattr(model, "all_leases" if name == "leases" else name), *args)
        assert got == expected, (name, args)
    assert run(store.current_revision) == model.revision
    assert run(store.changes, max(model.compacted, 0), 10_000) == model.changes(max(model.compacted, 0), 10_000)
