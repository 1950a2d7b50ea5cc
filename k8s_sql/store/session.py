"""One database transaction as the store's SQL code sees it."""

from __future__ import annotations

from typing import Any, Sequence

from k8s_sql.store.interfaces import IDialect


class Session:
    """Runs the store's statements, written with ``?`` placeholders, on a DB-API cursor.

    A session lives inside one ``ConnectionPool.runInteraction`` call: one database
    transaction, committed when the interaction returns and rolled back if it raises.
    """

    def __init__(self, cursor: Any, dialect: IDialect) -> None:
        self.cursor = cursor
        self.dialect = dialect
        #: The (revision, compaction) row a read-only transaction sees, once read: the
        #: reads sharing the transaction share it (``Reader.snapshot``).
        self.snapshot: tuple | None = None

    def run(self, statement: str, *params: Any) -> None:
        """Execute a statement for its effect."""
        self.cursor.execute(self.dialect.sql(statement), params)

    def run_many(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        """Execute a statement once per parameter row."""
        if rows:
            self.cursor.executemany(self.dialect.sql(statement), rows)

    def all(self, statement: str, *params: Any) -> list[tuple]:
        """Execute a query and return every row."""
        self.run(statement, *params)
        return list(self.cursor.fetchall())

    def one(self, statement: str, *params: Any) -> tuple | None:
        """Execute a query and return its first row, or ``None``."""
        rows = self.all(statement, *params)
        return rows[0] if rows else None
