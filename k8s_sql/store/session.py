"""One database transaction as the store's SQL code sees it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from k8s_sql.store.interfaces import IDialect


class Session:
    """Runs the store's statements, written with ``?`` placeholders, on a DB-API cursor.

    A session lives inside one ``ConnectionPool.runInteraction`` call: one database
    transaction, committed when the interaction returns (after ``flush``) and rolled back
    if it raises.
    """

    def __init__(self, cursor: Any, dialect: IDialect) -> None:
        self.cursor = cursor
        self.dialect = dialect
        #: The (revision, compaction) row a read-only transaction sees, once read: the
        #: reads sharing the transaction share it (``Reader.snapshot``).
        self.snapshot: tuple | None = None
        self._deferred: dict[str, list[Sequence[Any]]] = {}
        self._tables: dict[str, str] = {}

    def defer(self, insert: str, *params: Any) -> None:
        """Queue an ``INSERT INTO table ...`` of one row, run with the others of its kind in
        one ``executemany`` (one round trip where the driver batches them) just before the
        next statement naming its table, or at ``flush``."""
        rows = self._deferred.get(insert)
        if rows is None:
            rows = self._deferred[insert] = []
            self._tables[insert] = insert.split(None, 3)[2]
        rows.append(params)

    def flush(self) -> None:
        """Run the statements ``defer`` queued; the transaction calls this before commit."""
        deferred, self._deferred = self._deferred, {}
        for insert, rows in deferred.items():
            self.cursor.executemany(self.dialect.sql(insert), rows)

    def _flush_before(self, statement: str) -> None:
        """Run the deferred inserts first if ``statement`` names a table they write."""
        if self._deferred and any(self._tables[insert] in statement for insert in self._deferred):
            self.flush()

    def run(self, statement: str, *params: Any) -> None:
        """Execute a statement for its effect, after the deferred inserts into its tables."""
        self._flush_before(statement)
        self.cursor.execute(self.dialect.sql(statement), params)

    def run_many(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        """Execute a statement once per parameter row, after the deferred inserts into its tables."""
        if rows:
            self._flush_before(statement)
            self.cursor.executemany(self.dialect.sql(statement), rows)

    def all(self, statement: str, *params: Any) -> list[tuple]:
        """Execute a query and return every row."""
        self.run(statement, *params)
        return list(self.cursor.fetchall())

    def one(self, statement: str, *params: Any) -> tuple | None:
        """Execute a query and return its first row, or ``None``."""
        rows = self.all(statement, *params)
        return rows[0] if rows else None

    def row(self, statement: str, *params: Any) -> tuple:
        """Execute a query that always has a row (an aggregate, the counter row) and return it;
        ``LookupError`` if it has none."""
        row = self.one(statement, *params)
        if row is None:
            raise LookupError(f"no row for {statement!r}")
        return row
