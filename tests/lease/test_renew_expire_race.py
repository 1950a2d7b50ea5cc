"""A sweep racing a renewal: the renewal that committed must win (every backend)."""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any, Callable

import psycopg
import pymysql

from k8s_sql.store import open_store
from k8s_sql.store.model import PutRequest, RangeRequest
from k8s_sql.store.url import DatabaseURL


def raw_connection(backend: str) -> Any:
    url = DatabaseURL.parse(backend)
    if backend.startswith("sqlite"):
        connection = sqlite3.connect(url.database, isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        return connection
    if backend.startswith("mysql"):
        return pymysql.connect(host=url.host, port=url.port or 3306, user=url.user, password=url.password, database=url.database)
    return psycopg.connect(host=url.host, port=url.port or 5432, user=url.user or None, dbname=url.database)


def blocked_on_a_lock(backend: str, store: Any, run: Callable[..., Any]) -> Callable[[], bool]:
    """A probe: whether a transaction of the store now waits for the renewal's lock.

    MariaDB and PostgreSQL show lock waits, per database; SQLite does not, so the store's
    writer connection reports the statements it starts, and the probe holds once the
    writer has begun ``BEGIN IMMEDIATE``, which cannot finish while the renewal holds the
    write lock.
    """
    url = DatabaseURL.parse(backend)
    if backend.startswith("sqlite"):
        begun = threading.Event()

        def traced(statement: str) -> None:
            if statement.startswith("BEGIN IMMEDIATE"):
                begun.set()

        run(store.database._writer.runWithConnection, lambda connection: connection.set_trace_callback(traced))
        return begun.is_set
    if backend.startswith("mysql"):
        query = (
            "SELECT COUNT(*) FROM information_schema.innodb_trx t JOIN information_schema.processlist p"
            " ON p.id = t.trx_mysql_thread_id WHERE t.trx_state = 'LOCK WAIT' AND p.db = %s"
        )
    else:
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'"

    def waiting() -> bool:
        connection = raw_connection(backend)
        try:
            cursor = connection.cursor()
            cursor.execute(query, (url.database,))
            return cursor.fetchone()[0] > 0
        finally:
            connection.close()

    return waiting


def test_a_sweep_never_revokes_a_lease_renewed_under_it(backend: str, run: Callable[..., Any], reactor: Any) -> None:
    store = run(open_store, backend, reactor)
    try:
        run(store.lease_grant, 1, 10, 1000.0)
        run(store.put, PutRequest(b"k", b"v", lease=1))
        blocked = blocked_on_a_lock(backend, store, run)
        renewal = raw_connection(backend)  # a renewal at 1009.5, in flight on another server
        cursor = renewal.cursor()
        cursor.execute("SELECT ttl, deadline FROM k8s_lease WHERE id = 1" + ("" if backend.startswith("sqlite") else " FOR UPDATE"))
        cursor.execute("UPDATE k8s_lease SET deadline = 1019.5 WHERE id = 1")
        swept: list[Any] = []
        sweep = threading.Thread(target=lambda: swept.append(run(store.expire_leases, 1010.2, 10)))
        sweep.start()
        # The sweep read the lease as expired (1010 < 1010.2) and now waits for the renewal's lock.
        deadline = time.monotonic() + 30
        while not blocked():
            assert time.monotonic() < deadline and sweep.is_alive(), "the sweep never reached the renewal's lock"
            time.sleep(0.02)
        assert sweep.is_alive() and not swept
        renewal.commit()  # the client is told: TTL 10
        sweep.join(30)
        renewal.close()
        assert swept == [[]]
        assert run(store.leases) == [1]
        assert run(store.range, RangeRequest(key=b"k")).count == 1
    finally:
        run(store.close)
