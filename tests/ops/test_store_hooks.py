"""What the operations side needs from the real store, on every backend: transaction
observers (metrics, slow-transaction logs) and concurrent auto-compactions."""

from __future__ import annotations

from typing import Any, Callable

import pytest
from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.logger import LogLevel, capturedLogs

from k8s_sql.housekeeping.compactor import AutoCompactor, RevisionRetention
from k8s_sql.slowsql import SlowTransactionLog
from k8s_sql.store import open_store
from k8s_sql.store.errors import Compacted, EmptyKey
from k8s_sql.store.model import PutRequest, RangeRequest
from k8s_sql.store.session import Session

Run = Callable[..., Any]
Observed = tuple[bool, str, float, "BaseException | None"]


def requests(seen: list[Observed]) -> Callable[..., None]:
    """An observer recording what the test asks, not the store's background compaction steps."""
    def observe(*observed: Any) -> None:
        if observed[1] != "compaction.step":
            seen.append(observed)
    return observe


def test_every_transaction_is_observed(store: Any, run: Run) -> None:
    seen: list[tuple[bool, str, float, BaseException | None]] = []
    stop = store.database.observe_transactions(requests(seen))
    run(store.put, PutRequest(b"a", b"1"))
    run(store.range, RangeRequest(b"a"))
    stop()
    run(store.put, PutRequest(b"b", b"2"))
    (put, get) = seen
    assert put[:2] == (True, "store.SQLStore._locked(writes.Executor.put)") and put[3] is None
    assert get[:2] == (False, "store._range") and get[3] is None
    assert all(0 <= observed[2] < 30 for observed in seen)


def test_failed_transactions_are_observed_with_their_error(store: Any, run: Run) -> None:
    seen: list[tuple[bool, str, float, BaseException | None]] = []
    store.database.observe_transactions(requests(seen))

    def refuse(session: Session) -> None:
        raise EmptyKey()

    with pytest.raises(EmptyKey):
        run(store.database.read, refuse)
    ((writer, name, _, error),) = seen
    assert (writer, type(error)) == (False, EmptyKey)
    assert name == "test_store_hooks.test_failed_transactions_are_observed_with_their_error.<locals>.refuse"


def test_a_failing_observer_costs_nothing_but_a_log_line(store: Any, run: Run) -> None:
    def broken(*observed: object) -> None:
        raise RuntimeError("observer bug")

    store.database.observe_transactions(broken)
    with capturedLogs() as events:
        assert run(store.put, PutRequest(b"a", b"1")).revision == 2
    failures = [event["log_failure"].value.args for event in events if "log_failure" in event]
    assert failures and set(failures) == {("observer bug",)}


def test_slow_transactions_are_logged(store: Any, run: Run) -> None:
    store.database.observe_transactions(SlowTransactionLog(1e-9))
    with capturedLogs() as events:
        run(store.put, PutRequest(b"a", b"1"))
    (slow,) = [event for event in events
               if event.get("log_namespace") == "k8s_sql.slowsql.SlowTransactionLog" and event["name"] != "compaction.step"]
    assert slow["log_level"] == LogLevel.warn
    assert (slow["role"], slow["name"]) == ("write", "store.SQLStore._locked(writes.Executor.put)")


def test_fast_transactions_are_not() -> None:
    log = SlowTransactionLog(0.5)
    with capturedLogs() as events:
        log(False, "_range", 0.499, None)
        log(True, "store.SQLStore._locked(writes.Executor.put)", 0.5, RuntimeError("lost"))
    (slow,) = events
    assert slow["seconds"] == 0.5 and "failed: lost" in slow["outcome"]
    with pytest.raises(ValueError):
        SlowTransactionLog(0)


def _log_rows(session: Session, upto: int) -> int:
    return session.one("SELECT COUNT(*) FROM k8s_log WHERE revision <= ?", upto)[0]


def test_concurrent_auto_compactions_on_servers_sharing_a_database(backend: str, run: Run, reactor: Any) -> None:
    first = run(open_store, backend, reactor, compaction_batch=7)
    second = run(open_store, backend, reactor, compaction_batch=7)
    try:
        for number in range(60):  # revisions 2..61, five keys
            run(first.put, PutRequest(b"k%d" % (number % 5), b"v%d" % number))
        compactors = [AutoCompactor(store, reactor, RevisionRetention(10)) for store in (first, second)]
        run(lambda: DeferredList([ensureDeferred(compactor.check()) for compactor in compactors], fireOnOneErrback=True))
        assert [compactor.compacted for compactor in compactors] == [51, 51]
        assert run(second.compact_revision) == 51
        with pytest.raises(Compacted):
            run(first.range, RangeRequest(b"k0", revision=50))
        at_51 = run(second.range, RangeRequest(b"k", b"l", revision=51))
        assert [(kv.key, kv.value) for kv in at_51.kvs] == [(b"k%d" % n, b"v%d" % (45 + n)) for n in range(5)]
        now = run(first.range, RangeRequest(b"k", b"l"))
        assert [(kv.key, kv.value) for kv in now.kvs] == [(b"k%d" % n, b"v%d" % (55 + n)) for n in range(5)]
        # Physically compacted: each key's latest version at or below 51 is all that is left there.
        assert run(first.database.read, _log_rows, 51) == 5
    finally:
        run(first.close)
        run(second.close)
