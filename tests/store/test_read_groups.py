"""Reads waiting together share one read transaction, yet each keeps its own answer.

The stores here have one reader connection, so that reads called together form one group.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from twisted.internet import defer

from k8s_sql.store import open_store
from k8s_sql.store.errors import FutureRevision
from k8s_sql.store.model import PutRequest, RangeRequest
from k8s_sql.store.reads import HEADER
from k8s_sql.store.session import Session


@pytest.fixture
def store(backend: str, run: Any, reactor: Any) -> Iterator[Any]:
    """A store on ``backend`` with a single reader connection."""
    opened = run(open_store, f"{backend}?readers=1", reactor)
    yield opened
    run(opened.close)


def together(run: Any, store: Any, *reads: tuple) -> list[tuple[bool, Any]]:
    """Call ``store.database.read`` for each read in one reactor turn; (ok, result) each."""

    async def call() -> list[tuple[bool, Any]]:
        calls = [defer.ensureDeferred(store.database.read(function, *args)) for function, *args in reads]
        return await defer.DeferredList(calls, consumeErrors=True)

    return run(call)


def test_reads_called_together_share_a_snapshot(run: Any, store: Any) -> None:
    run(store.put, PutRequest(b"k", b"v"))
    sessions: list[Session] = []

    def value(session: Session, key: bytes) -> bytes:
        sessions.append(session)
        return session.one("SELECT value FROM k8s_kv WHERE k = ?", key)[0]

    outcomes = together(run, store, *[(value, b"k")] * 6)
    assert outcomes == [(True, b"v")] * 6
    assert len(sessions) == 6 and len(set(map(id, sessions))) == 1


def test_a_read_refused_fails_alone(run: Any, store: Any) -> None:
    def refused(session: Session) -> None:
        raise FutureRevision()

    def count(session: Session) -> int:
        return session.one("SELECT COUNT(*) FROM k8s_kv")[0]

    outcomes = together(run, store, (count,), (refused,), (count,))
    assert [ok for ok, _ in outcomes] == [True, False, True]
    assert outcomes[1][1].check(FutureRevision)


def test_a_read_failing_unexpectedly_fails_alone(run: Any, store: Any) -> None:
    """A bug in one read, not a database failure, fails that read only."""

    def broken(session: Session) -> None:
        raise ZeroDivisionError(session.one("SELECT COUNT(*) FROM k8s_kv")[0])

    def revision(session: Session) -> int:
        return session.one("SELECT revision FROM k8s_revision")[0]

    outcomes = together(run, store, (revision,), (broken,), (revision,), (revision,))
    assert [ok for ok, _ in outcomes] == [True, False, True, True]
    assert outcomes[1][1].check(ZeroDivisionError)
    assert [result for ok, result in outcomes if ok] == [1, 1, 1]


def test_each_read_is_observed_under_its_own_name(run: Any, store: Any) -> None:
    seen: dict[str, BaseException | None] = {}

    def observe(writer: bool, name: str, seconds: float, error: BaseException | None) -> None:
        if not writer:
            seen[name.rpartition(".")[2]] = error

    store.database.observe_transactions(observe)

    def first(session: Session) -> int:
        return 1

    def second(session: Session) -> int:
        raise FutureRevision()

    together(run, store, (first,), (second,))
    assert sorted(seen) == ["first", "second"]
    assert seen["first"] is None and isinstance(seen["second"], FutureRevision)


def test_a_read_called_after_a_write_answered_sees_it(run: Any, store: Any) -> None:
    async def write_then_read() -> list[Any]:
        before = store.range(RangeRequest(b"k"))
        await store.put(PutRequest(b"k", b"v"))
        after = store.range(RangeRequest(b"k"))
        return [len((await before).kvs), (await after).kvs[0].value]

    assert run(write_then_read) in ([0, b"v"], [1, b"v"])


def test_ranges_sharing_a_transaction_read_its_revision_once(run: Any, store: Any, monkeypatch: Any) -> None:
    run(store.put, PutRequest(b"k", b"v"))
    statements: list[str] = []
    original = Session.run

    def counted(session: Session, statement: str, *params: Any) -> None:
        statements.append(statement)
        original(session, statement, *params)

    monkeypatch.setattr(Session, "run", counted)

    async def ranges() -> list[Any]:
        return await defer.gatherResults([store.range(RangeRequest(b"k")) for _ in range(5)])

    assert [response.kvs[0].value for response in run(ranges)] == [b"v"] * 5
    # The store's background compaction may run its own statements meanwhile: count reads only.
    reads = [statement for statement in statements if statement == HEADER or "FROM k8s_kv" in statement]
    assert reads.count(HEADER) == 1 and len(reads) == 6
