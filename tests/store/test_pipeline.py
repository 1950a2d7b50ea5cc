"""PostgreSQL write transactions in pipeline mode: fewer round trips, the same outcomes."""

from __future__ import annotations

from typing import Any

import pytest
from psycopg import errors as pg_errors
from psycopg.pq import PipelineStatus

from k8s_sql.store.model import PutRequest, RangeRequest
from k8s_sql.store.session import Session

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)


def test_write_transactions_run_in_pipeline_mode(run: Any, store: Any) -> None:
    def status(session: Session) -> PipelineStatus:
        return session.cursor.connection.pgconn.pipeline_status

    assert run(store.database.write, status) == PipelineStatus.ON
    assert run(store.database.read, status) == PipelineStatus.OFF


def test_a_statement_failing_unread_fails_its_transaction(run: Any, store: Any) -> None:
    """The error of an INSERT nothing waits for comes with the next query: the write fails
    and nothing of it is committed."""
    run(store.put, PutRequest(b"k", b"v"))

    def duplicate(session: Session) -> None:
        session.run("UPDATE k8s_kv SET value = ? WHERE k = ?", b"changed", b"k")
        session.run(
            "INSERT INTO k8s_kv (k, create_revision, mod_revision, sub, version, lease, value)"
            " VALUES (?, 1, 1, 0, 1, 0, ?)", b"k", b"x",
        )
        session.one("SELECT COUNT(*) FROM k8s_kv")

    with pytest.raises(pg_errors.UniqueViolation):
        run(store.database.write, duplicate)
    assert run(store.range, RangeRequest(b"k")).kvs[0].value == b"v"
