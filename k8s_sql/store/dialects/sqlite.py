"""SQLite, the embedded default: one file, WAL mode, one writer connection.

``synchronous=FULL`` in WAL mode syncs the WAL on every commit, so a commit is durable
when the store answers.  Readers use their own connections and see a snapshot without
blocking the writer.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Any

from k8s_sql.store.connections import QuietConnectionPool
from k8s_sql.store.dialects.base import Dialect as BaseDialect
from k8s_sql.store.dialects.base import Fault
from k8s_sql.store.filelock import FileLock
from k8s_sql.store.model import DatabaseSize
from k8s_sql.store.session import Session

#: etcd's default request limit: SQLite itself accepts keys up to its 1 GB string limit.
MAX_REQUEST_BYTES = 1536 * 1024

#: How long a connection waits for another process holding the write lock, in seconds.
BUSY_TIMEOUT = 10.0


class Dialect(BaseDialect):
    """SQLite through the standard library's ``sqlite3``."""

    name = "sqlite"
    driver = "sqlite3"
    max_key_bytes = MAX_REQUEST_BYTES
    lock_suffix = ""
    tables_statement = "SELECT name FROM sqlite_master WHERE type = 'table'"
    key_type = blob_type = "BLOB"
    real_type = "REAL"
    table_options = " WITHOUT ROWID"
    clustered = True
    placeholder = "?"
    #: SQLite's driver takes the GIL back for every row it returns: more reader threads
    #: mostly wait for one another (gets 2,100 -> 2,500-3,000/s and pages of 500 keys
    #: 150 -> 190-200/s from 4 readers to 2, bench/kv.py), while a second one keeps a long
    #: read from holding up all the others.
    default_readers = 2

    def connection_pool(self, reactor: Any, writer: bool, size: int) -> QuietConnectionPool:
        """One connection for the writer, since SQLite has one writer at a time; for a
        database file, its transactions hold ``FileLock`` on ``<file>-lock``, so that the
        writers of several processes take turns without polling (``k8s_sql.store.filelock``)."""
        pool = super().connection_pool(reactor, writer, 1 if writer else size)
        database = self.url.database
        if writer and database and database != ":memory:" and not database.startswith("file:"):
            pool.interaction_lock = FileLock(f"{database}-lock")
        return pool

    def connect_arguments(self) -> tuple[tuple, dict[str, Any]]:
        """Autocommit mode (the store issues BEGIN), usable from the pool's threads."""
        return (self.url.database,), {"isolation_level": None, "check_same_thread": False, "timeout": BUSY_TIMEOUT}

    def configure(self, connection: sqlite3.Connection, writer: bool) -> None:
        """WAL journal and full sync for the writer; readers may only read."""
        if writer:
            connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        if not writer:
            connection.execute("PRAGMA query_only = ON")

    @contextlib.contextmanager
    def transaction(self, cursor: Any, writer: bool) -> Iterator[None]:
        """A writer takes the database's write lock at once; a reader opens a snapshot."""
        cursor.execute("BEGIN IMMEDIATE" if writer else "BEGIN")
        yield

    def database_size(self, session: Session) -> DatabaseSize:
        """The database file's pages, and those not on its free list."""
        page_size = session.row("PRAGMA page_size")[0]
        pages = session.row("PRAGMA page_count")[0]
        free = session.row("PRAGMA freelist_count")[0]
        return DatabaseSize(pages * page_size, (pages - free) * page_size)

    def defragment(self, connection: sqlite3.Connection) -> None:
        """VACUUM rewrites the file without free pages; the checkpoint then shrinks it.

        VACUUM holds the write lock until it ends, so writes wait (readers do not); it
        cannot run inside a transaction, hence its own autocommit connection.
        """
        connection.execute("VACUUM")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def fault(self, error: BaseException) -> Fault | None:
        """Operational errors mean unavailable: "database is locked" comes only once
        ``BUSY_TIMEOUT`` has passed waiting for another process's write lock; so does a
        lock file that cannot be opened (``OSError``)."""
        if isinstance(error, (sqlite3.OperationalError, OSError)):
            return Fault.UNAVAILABLE
        return None
