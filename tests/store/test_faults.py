"""Database failures: unreachable at start, lost while running and back, schema too new."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from twisted.internet import defer
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from k8s_sql.store import open_store
from k8s_sql.store.errors import SchemaTooNew, Unavailable
from k8s_sql.store.model import PutRequest, RangeRequest
from k8s_sql.store.schema import SCHEMA_VERSION_ROW
from k8s_sql.store.session import Session
from tests.store.proxy import CuttableProxy


def with_password(url: str) -> str:
    """``url`` with a password in it, which no message may show."""
    scheme, rest = url.split("://", 1)
    user, rest = rest.split("@", 1)
    return f"{scheme}://{user}:s3cret-password@{rest}"


@pytest.mark.parametrize("backend", ["mysql", "postgres"], indirect=True)
def test_an_unreachable_server_is_reported_clearly_at_start(run: Any, reactor: Any, backend: str) -> None:
    proxy = CuttableProxy(reactor, backend)
    url = run(proxy.start)
    run(proxy.cut)
    with pytest.raises(Unavailable) as unavailable:
        run(open_store, with_password(url), reactor)
    message = str(unavailable.value)
    assert f"127.0.0.1:{proxy.port}" in message and "unavailable" in message
    assert "s3cret" not in message


def test_a_mysql_server_that_never_answers_is_reported_at_start(run: Any, reactor: Any) -> None:
    """A server that accepts connections but never sends its handshake cannot hang start-up."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(Unavailable) as unavailable:
            run(open_store, f"mysql://root@127.0.0.1:{port}/test?read_timeout=1&writers=1&readers=1", reactor)
    assert time.monotonic() - started < 20
    assert f"127.0.0.1:{port}" in str(unavailable.value)


def test_an_unusable_sqlite_file_is_reported_clearly_at_start(run: Any, reactor: Any, tmp_path: Any) -> None:
    with pytest.raises(Unavailable) as unavailable:
        run(open_store, f"sqlite:///{tmp_path}/missing/dir/k8s.db", reactor)
    assert "missing/dir/k8s.db" in str(unavailable.value)


def test_a_newer_schema_is_refused(run: Any, store: Any, backend: str, reactor: Any) -> None:
    def upgrade(session: Session) -> None:
        session.run("UPDATE k8s_meta SET value = 99 WHERE name = ?", SCHEMA_VERSION_ROW)

    run(store.database.write, upgrade)
    with pytest.raises(SchemaTooNew, match="version 99.*upgrade k8s-sql"):
        run(open_store, backend, reactor)


@pytest.mark.parametrize("backend", ["mysql", "postgres"], indirect=True)
def test_a_lost_database_fails_calls_until_it_is_back(run: Any, reactor: Any, backend: str) -> None:
    proxy = CuttableProxy(reactor, backend)
    store = run(open_store, run(proxy.start), reactor)
    try:
        assert run(store.put, PutRequest(b"a")).revision == 2
        run(proxy.cut)
        for attempt in (lambda: store.put(PutRequest(b"b")), lambda: store.range(RangeRequest(b"a"))):
            with pytest.raises(Unavailable) as unavailable:
                run(attempt)
            assert f"127.0.0.1:{proxy.port}" in str(unavailable.value)
        run(proxy.restore)
        assert run(store.put, PutRequest(b"b")).revision == 3
        assert run(store.range, RangeRequest(b"a")).count == 1
        assert [event.kv.key for event in run(store.changes, 1, 10)] == [b"a", b"b"]
    finally:
        run(store.close)


@pytest.mark.parametrize("backend", ["mysql", "postgres"], indirect=True)
def test_an_outage_is_logged_once_and_its_end_once(run: Any, reactor: Any, backend: str) -> None:
    """No "Rollback failed" tracebacks (adbapi logged two per request under way): one warning
    when the database is lost, one line when it answers again."""
    proxy = CuttableProxy(reactor, backend)
    store = run(open_store, run(proxy.start), reactor)
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        run(store.put, PutRequest(b"a"))

        async def during_the_outage() -> list[Any]:
            await proxy.cut()
            calls = [store.put(PutRequest(b"k%d" % i)) for i in range(8)] + [
                store.range(RangeRequest(b"a")) for _ in range(8)
            ]
            return await defer.DeferredList([defer.ensureDeferred(c) for c in calls], consumeErrors=True)

        outcomes = run(during_the_outage)
        assert all(not ok and failure.check(Unavailable) for ok, failure in outcomes)
        run(proxy.restore)
        assert run(store.put, PutRequest(b"b")).revision == 3
    finally:
        globalLogPublisher.removeObserver(events.append)
        run(store.close)
    ours = f"127.0.0.1:{proxy.port}"
    texts = [formatEvent(event) + str(event.get("log_failure", "")) for event in events]
    assert not [text for text in texts if "Rollback failed" in text or "close failed" in text]
    assert not [event for event in events if "log_failure" in event and ours in str(event["log_failure"].value)]
    warnings = [
        text
        for event, text in zip(events, texts)
        if event["log_level"] in (LogLevel.warn, LogLevel.error, LogLevel.critical) and ours in text
    ]
    assert len(warnings) == 1 and "is unavailable" in warnings[0]
    assert len([text for text in texts if ours in text and "answers again" in text and "transactions failed" in text]) == 1
