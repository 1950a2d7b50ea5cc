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


def test_a_sweep_never_revokes_a_lease_renewed_under_it(backend: str, run: Callable[..., Any], reactor: Any) -> None:
    store = run(open_store, backend, reactor)
    try:
        run(store.lease_grant, 1, 10, 1000.0)
        run(store.put, PutRequest(b"k", b"v", lease=1))
        renewal = raw_connection(backend)  # a renewal at 1009.5, in flight on another server
        cursor = renewal.cursor()
        cursor.execute("SELECT ttl, deadline FROM k8s_lease WHERE id = 1" + ("" if backend.startswith("sqlite") else " FOR UPDATE"))
        cursor.execute("UPDATE k8s_lease SET deadline = 1019.5 WHERE id = 1")
        swept: list[Any] = []
        sweep = threading.Thread(target=lambda: swept.append(run(store.expire_leases, 1010.2, 10)))
        sweep.start()
        time.sleep(1.0)  # the sweep now waits for the renewal's row
        renewal.commit()  # the client is told: TTL 10
        sweep.join(30)
        renewal.close()
        assert swept == [[]]
        assert run(store.leases) == [1]
        assert run(store.range, RangeRequest(key=b"k")).count == 1
    finally:
        run(store.close)
