"""Reads whose cost does not grow with history or with the number of other keys.

The work of the store's own read path is counted by each database, not timed: SQLite's
virtual-machine steps (a progress handler), MariaDB/MySQL's handler row reads
(``Handler_read_*``), and PostgreSQL's index entries and table rows read
in this transaction (``pg_stat_get_xact_tuples_returned``), with plans from ``EXPLAIN``.  A Kubernetes Get, Count, page of a List and a
page pinned to a recent revision cost exactly as much after the database gathered ten
times more history and other keys as before.  PostgreSQL's counts move a little either way
(index entries of row versions not yet pruned, leaf page boundaries), so there the cost may
differ by a quarter at most, where growing with the data would multiply it; and its plans
scan no table sequentially.
"""

from __future__ import annotations

import json
from typing import Any

from k8s_sql.store.model import DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest
from k8s_sql.store.reads import COUNT, Reader
from k8s_sql.store.schema import KEY_INDEX
from k8s_sql.store.session import Session

PREFIX, END = b"/registry/pods/default/", b"/registry/pods/default0"
PODS = [PREFIX + b"pod-%03d" % index for index in range(30)]


class MeteredSession(Session):
    """A session that adds up the work the database reports for each query it runs."""

    def __init__(self, session: Session) -> None:
        super().__init__(session.cursor, session.dialect)
        self.work = 0
        self.plans: list[dict] = []

    def all(self, statement: str, *params: Any) -> list[tuple]:
        name = self.dialect.name
        if name == "sqlite":
            steps = [0]

            def count() -> int:
                steps[0] += 1
                return 0

            connection = self.cursor.connection
            connection.set_progress_handler(count, 1)
            try:
                rows = super().all(statement, *params)
            finally:
                connection.set_progress_handler(None, 1)
            self.work += steps[0]
            return rows
        if name == "mysql":
            before = self._handler_reads()
            rows = super().all(statement, *params)
            self.work += self._handler_reads() - before
            return rows
        self.cursor.execute("EXPLAIN (FORMAT JSON) " + self.dialect.sql(statement), params)
        plan = self.cursor.fetchall()[0][0]
        self.plans.append((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"])
        before = self._rows_read()
        rows = super().all(statement, *params)
        self.work += self._rows_read() - before
        return rows

    def _handler_reads(self) -> int:
        self.cursor.execute("SHOW SESSION STATUS LIKE 'Handler_read%%'")
        return sum(int(value) for _, value in self.cursor.fetchall())

    def _rows_read(self) -> int:
        # Rows read by sequential scans of the tables plus entries read from their indexes.
        self.cursor.execute(
            "SELECT COALESCE(SUM(pg_stat_get_xact_tuples_returned(oid)), 0) FROM pg_class"
            " WHERE relname LIKE 'k8s%%' AND relkind IN ('r', 'i') AND relnamespace = current_schema()::regnamespace"
        )
        return int(self.cursor.fetchall()[0][0])


def _scans(node: dict) -> set[str]:
    """The scans of a PostgreSQL plan: index names, or "Seq Scan on <table>"."""
    if "Index Name" in node:
        found = {node["Index Name"]}
    elif node["Node Type"] == "Seq Scan":
        found = {f"Seq Scan on {node['Relation Name']}"}
    else:
        found = set()
    for child in node.get("Plans", []):
        found |= _scans(child)
    return found


def work(run: Any, store: Any, request: RangeRequest) -> tuple[int, Any, set[str]]:
    """The work of one range, its answer, and on PostgreSQL the scans it made."""

    def measure(session: Session) -> tuple[int, Any, set[str]]:
        metered = MeteredSession(session)
        reader = Reader.snapshot(session)
        answer = Reader(metered, reader.revision, reader.compacted).range(request, reader.revision)
        return metered.work, answer, set().union(*map(_scans, metered.plans))

    return run(store.database.read, measure)


def grow(run: Any, store: Any, generation: int, others: int) -> None:
    """Add ``others`` keys elsewhere and delete 100 of them, rewrite every pod three times,
    then change pods 0-4 one at a time."""
    batch = [PutRequest(b"/registry/other/%d/%05d" % (generation, index), b"x" * 100) for index in range(others)]
    for start in range(0, len(batch), 100):
        run(store.txn, TxnRequest(success=tuple(batch[start : start + 100])))
    run(store.delete_range, DeleteRangeRequest(b"/registry/other/%d/00000" % generation, b"/registry/other/%d/00100" % generation))
    for round_ in range(3):
        run(store.txn, TxnRequest(success=tuple(PutRequest(pod, b"spec %d %d" % (generation, round_)) for pod in PODS)))
    for pod in PODS[:5]:
        run(store.put, PutRequest(pod, b"status %d" % generation))


def settle(store: Any) -> None:
    """Let PostgreSQL vacuum and analyze, as autovacuum would: dead row versions left by
    recent updates cost index entries until then, whatever the history."""
    if store.database.dialect.name == "postgres":
        import psycopg

        with psycopg.connect(store.database.dialect.conninfo(), autocommit=True) as connection:
            connection.execute("VACUUM ANALYZE k8s_kv, k8s_log")


def log_size(run: Any, store: Any) -> int:
    def count(session: Session) -> int:
        return session.one("SELECT COUNT(*) FROM k8s_log")[0]

    return run(store.database.read, count)


def test_gets_counts_and_pages_cost_the_same_whatever_the_history(run: Any, store: Any) -> None:
    def requests() -> dict[str, RangeRequest]:
        recent = run(store.current_revision) - 5
        return {
            "get": RangeRequest(PODS[7]),
            "count": RangeRequest(PREFIX, END, count_only=True),
            "page": RangeRequest(PREFIX + b"pod-010\0", END, limit=5),
            "pinned page": RangeRequest(PREFIX + b"pod-010\0", END, limit=5, revision=recent),
            "pinned first page": RangeRequest(PREFIX, END, limit=5, revision=recent),
        }

    grow(run, store, 0, 300)
    settle(store)
    before = {name: work(run, store, request) for name, request in requests().items()}
    history = log_size(run, store)
    for generation in range(1, 10):
        grow(run, store, generation, 300)
    settle(store)
    after = {name: work(run, store, request) for name, request in requests().items()}

    assert log_size(run, store) >= 9 * history
    slack = 0.25 if store.database.dialect.name == "postgres" else 0.0
    changed = {
        name: (before[name][0], cost) for name, (cost, _, _) in after.items() if abs(cost - before[name][0]) > slack * before[name][0]
    }
    assert changed == {}
    assert [kv.key for kv in after["page"][1].kvs] == PODS[11:16] and after["page"][1].count == 19
    assert after["count"][1].count == 30
    assert [kv.key for kv in after["pinned first page"][1].kvs] == PODS[:5]
    if store.database.dialect.name == "postgres":
        assert after["get"][2] == after["count"][2] == after["page"][2] == {"k8s_kv_pkey"}
        assert not any(scan.startswith("Seq Scan") for _, _, scans in after.values() for scan in scans)


def test_counts_read_the_narrow_index_of_keys(run: Any, store: Any) -> None:
    """Where the table lives in its primary key with the values (SQLite, InnoDB), a count
    of a range reads the index of keys alone; PostgreSQL's primary key is that index."""
    name = store.database.dialect.name

    def index_used(session: Session) -> str:
        statement = session.dialect.sql(COUNT["between"])
        if name == "sqlite":
            session.cursor.execute("EXPLAIN QUERY PLAN " + statement, (PREFIX, END))
            return session.cursor.fetchall()[0][3].split(" INDEX ")[1].split()[0]
        if name == "mysql":
            session.cursor.execute("EXPLAIN " + statement, (PREFIX, END))
            return session.cursor.fetchall()[0][5]
        session.cursor.execute("EXPLAIN (FORMAT JSON) " + statement, (PREFIX, END))
        plan = session.cursor.fetchall()[0][0]
        return _scans((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]).pop()

    grow(run, store, 0, 2000)
    settle(store)
    assert run(store.database.read, index_used) == ("k8s_kv_pkey" if name == "postgres" else KEY_INDEX)
