"""PostgreSQL through psycopg 3.

Writers run at READ COMMITTED: once a writer holds the revision counter's row lock, each of
its statements sees everything committed before.  Readers run at REPEATABLE READ, READ ONLY:
one snapshot per transaction.  Keys and values are ``bytea`` (byte-wise order); keys are
limited by B-tree entries of at most 2704 bytes.  Every write announces its revision with
``pg_notify`` inside its transaction, so other servers hear of commits, in commit order,
as they happen.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import make_conninfo

from k8s_sql.store.dialects.base import Dialect as BaseDialect
from k8s_sql.store.dialects.base import Fault
from k8s_sql.store.listener import CommitListener
from k8s_sql.store.model import DatabaseSize
from k8s_sql.store.schema import TABLES
from k8s_sql.store.session import Session

#: A (lease, key) B-tree entry holds 20 bytes besides the key, within 2704.
MAX_KEY_BYTES = 2684

#: The advisory lock serializing schema creation (the bytes of "k8s_sql").
SCHEMA_LOCK = 0x6B38735F73716C

_RETRY = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected)

#: How the listening connection notices a silently dead server.
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}


class _InFlightErrorFilter(logging.Filter):
    """Drops psycopg's "error ignored terminating <Pipeline>" warning: it comes with the error
    that ended the transaction, which the store reports (once per outage)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("error ignored terminating")


logging.getLogger("psycopg").addFilter(_InFlightErrorFilter())


class Dialect(BaseDialect):
    """PostgreSQL 12 or later."""

    name = "postgres"
    driver = "psycopg"
    max_key_bytes = MAX_KEY_BYTES
    tables_statement = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    key_type = blob_type = "BYTEA"
    real_type = "DOUBLE PRECISION"
    known_options = frozenset(
        {
            "sslmode",
            "sslrootcert",
            "sslcert",
            "sslkey",
            "sslpassword",
            "application_name",
            "options",
            "target_session_attrs",
            "keepalives",
            "keepalives_idle",
            "keepalives_interval",
            "keepalives_count",
            "tcp_user_timeout",
        }
    )

    def conninfo(self, **extra: Any) -> str:
        """The libpq connection string for this dialect's URL."""
        return make_conninfo(
            "",
            host=self.url.host,
            port=self.url.port or 5432,
            user=self.url.user or None,
            password=self.url.password or None,
            dbname=self.url.database,
            connect_timeout=self.connect_timeout,
            **{**self.options, **extra},
        )

    def connect_arguments(self) -> tuple[tuple, dict[str, Any]]:
        """Transactions on; psycopg prepares statements that run repeatedly."""
        return (self.conninfo(),), {"autocommit": False}

    def configure(self, connection: psycopg.Connection, writer: bool) -> None:
        """Readers get read-only snapshot transactions; writers keep READ COMMITTED."""
        if not writer:
            connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            connection.read_only = True

    @contextlib.contextmanager
    def transaction(self, cursor: Any, writer: bool) -> Iterator[None]:
        """Writers run in pipeline mode: a statement whose result nothing reads (BEGIN, an
        INSERT, an UPDATE, NOTIFY) is sent without waiting for its answer, which comes back
        with the next query's, so a write of one key takes one round trip to the server
        instead of three.  A statement's error is raised by the next one read, or on
        leaving.  Readers wait for every answer anyway: there, psycopg's pipeline
        bookkeeping would only add CPU time.
        """
        if not writer:
            yield
            return
        with cursor.connection.pipeline():
            yield

    @contextlib.contextmanager
    def schema_lock(self, cursor: Any) -> Iterator[None]:
        """A transaction-scoped advisory lock, released by the schema transaction's commit."""
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        yield

    def database_size(self, session: Session) -> DatabaseSize:
        """The tables' size with indexes and TOAST; in use, the share of live rows in it.

        The live and dead row counts are PostgreSQL's statistics, so the share is an
        estimate, exact after a VACUUM.
        """
        rows = session.all(
            "SELECT pg_total_relation_size(c.oid), COALESCE(s.n_live_tup, 0), COALESCE(s.n_dead_tup, 0)"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid"
            f" WHERE n.nspname = current_schema() AND c.relname IN ({', '.join('?' * len(TABLES))})",
            *TABLES,
        )
        total = sum(size for size, _, _ in rows)
        in_use = sum(size * live // (live + dead) if live + dead else size for size, live, dead in rows)
        return DatabaseSize(total, in_use)

    def defragment(self, connection: psycopg.Connection) -> None:
        """A plain VACUUM: dead rows' space becomes reusable and empty trailing pages go back
        to the file system, while reads and writes go on.  (VACUUM FULL would block them all.)
        """
        connection.autocommit = True
        connection.execute(f"VACUUM {', '.join(TABLES)}")

    def fault(self, error: BaseException) -> Fault | None:
        """Serialization failures and deadlocks are retried; lost connections are unavailable."""
        if isinstance(error, _RETRY):
            return Fault.RETRY
        if isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError)):
            return Fault.UNAVAILABLE
        return None

    def announce(self, cursor: Any, channel: str, revision: int) -> None:
        """NOTIFY the revision; PostgreSQL delivers it at commit, in commit order."""
        cursor.execute("SELECT pg_notify(%s, %s)", (channel, str(revision)))

    async def listen(self, reactor: Any, channel: str, observer: Callable[[int], None]) -> CommitListener:
        """Listen on a dedicated connection."""
        listener = CommitListener(
            reactor, lambda: psycopg.connect(self.conninfo(**_KEEPALIVES), autocommit=True), channel, observer
        )
        await listener.start()
        return listener
