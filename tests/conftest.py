"""Fixtures shared by the whole test suite.

How tests drive Twisted
-----------------------
The global reactor runs in one background thread for the whole session, started the first
time a test asks for it.  A test stays a plain synchronous pytest function and calls
``run(function, *args, **kwargs)`` (the ``run`` fixture): ``function`` is called *in the
reactor thread*, and if it returns a Deferred or a coroutine, ``run`` waits for its result
(default timeout 30 s, ``timeout=`` to change it) and returns it, or raises its exception.
Code under test therefore only ever runs in the reactor thread, as in production::

    def test_put(run, store):
        response = run(store.put, PutRequest(b"k", b"v"))

Unit tests that need no real I/O keep using ``task.Clock``, ``MemoryReactor`` and
``StringTransport`` directly, without this thread.

Databases
---------
``backend`` is parametrized over ``sqlite``, ``mysql`` and ``postgres`` and gives the URL of
a fresh, empty database for one test: a file in the test's temporary directory for SQLite,
a uniquely named database created on the server and dropped afterwards for MariaDB/MySQL
(``K8S_SQL_TEST_MYSQL``, default ``mysql://root@127.0.0.1:3306/test``) and PostgreSQL
(``K8S_SQL_TEST_POSTGRES``, default ``postgres://postgres@127.0.0.1:5432/test``).  A server
that cannot be reached skips its tests, unless ``CI=true``: then they fail.
``database_server(name)`` gives the same helper for tests that need several databases.
``store`` is an ``IStore`` opened on ``backend`` with the real reactor, closed afterwards.
"""

from __future__ import annotations

import os
import queue
import threading
import uuid
from typing import Any, Callable, Iterator

import pytest
from twisted.internet import defer
from twisted.python.failure import Failure

BACKENDS = ("sqlite", "mysql", "postgres")

SERVER_URLS = {
    "mysql": os.environ.get("K8S_SQL_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test"),
    "postgres": os.environ.get("K8S_SQL_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test"),
}


class ReactorThread:
    """The global reactor, running in a daemon thread until the session ends."""

    def __init__(self) -> None:
        from twisted.internet import reactor

        self.reactor = reactor
        self._thread = threading.Thread(
            target=reactor.run, kwargs={"installSignalHandlers": False}, name="reactor", daemon=True
        )
        self._thread.start()

    def run(self, function: Callable[..., Any], *args: Any, timeout: float = 30.0, **kwargs: Any) -> Any:
        """Call ``function`` in the reactor thread and wait for its (possibly deferred) result."""
        outcome: queue.Queue = queue.Queue(1)

        def start() -> None:
            result = defer.maybeDeferred(function, *args, **kwargs)
            result.addTimeout(timeout, self.reactor)
            result.addBoth(outcome.put)

        self.reactor.callFromThread(start)
        result = outcome.get(timeout=timeout + 10)
        if isinstance(result, Failure):
            result.raiseException()
        return result

    def stop(self) -> None:
        """Stop the reactor and wait for its thread."""
        self.reactor.callFromThread(self.reactor.stop)
        self._thread.join(10)


@pytest.fixture(scope="session")
def reactor_thread() -> Iterator[ReactorThread]:
    """The reactor thread (see the module docstring)."""
    thread = ReactorThread()
    yield thread
    thread.stop()


@pytest.fixture(scope="session")
def reactor(reactor_thread: ReactorThread) -> Any:
    """The running global reactor; touch it only through ``run``."""
    return reactor_thread.reactor


@pytest.fixture(scope="session")
def run(reactor_thread: ReactorThread) -> Callable[..., Any]:
    """``run(function, *args, timeout=30, **kwargs)``: see the module docstring."""
    return reactor_thread.run


class DatabaseServer:
    """A MariaDB/MySQL or PostgreSQL server on which tests create scratch databases."""

    def __init__(self, backend: str, url: str) -> None:
        from k8s_sql.store.url import DatabaseURL

        self.backend = backend
        self.url = DatabaseURL.parse(url)

    def _admin(self) -> Any:
        if self.backend == "mysql":
            import pymysql

            return pymysql.connect(
                host=self.url.host, port=self.url.port or 3306, user=self.url.user,
                password=self.url.password, database=self.url.database, autocommit=True, connect_timeout=5,
            )
        import psycopg

        return psycopg.connect(
            host=self.url.host, port=self.url.port or 5432, user=self.url.user or None,
            password=self.url.password or None, dbname=self.url.database, autocommit=True, connect_timeout=5,
        )

    def check(self) -> None:
        """Raise if the server cannot be reached."""
        self._admin().close()

    def create(self) -> str:
        """Create an empty database; return its name."""
        name = f"k8s_sql_test_{uuid.uuid4().hex[:16]}"
        self.execute(f"CREATE DATABASE {name}")
        return name

    def drop(self, name: str) -> None:
        """Drop database ``name``, even with connections left open."""
        self.execute(f"DROP DATABASE IF EXISTS {name}" + (" WITH (FORCE)" if self.backend == "postgres" else ""))

    def execute(self, statement: str) -> None:
        """Run one statement on the server's administrative database."""
        connection = self._admin()
        try:
            connection.cursor().execute(statement)
        finally:
            connection.close()

    def database_url(self, name: str) -> str:
        """The URL of database ``name`` on this server."""
        credentials = self.url.user + (f":{self.url.password}" if self.url.password else "")
        port = f":{self.url.port}" if self.url.port else ""
        return f"{self.backend}://{credentials}@{self.url.host}{port}/{name}"


_reachability: dict[str, BaseException | None] = {}


def database_server(backend: str) -> DatabaseServer:
    """The server for ``backend``; skips (or with ``CI=true`` fails) the test when it is unreachable."""
    server = DatabaseServer(backend, SERVER_URLS[backend])
    if backend not in _reachability:
        try:
            server.check()
            _reachability[backend] = None
        except Exception as error:
            _reachability[backend] = error
    error = _reachability[backend]
    if error is not None:
        message = f"{backend} test server {server.url} is unreachable: {error}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return server


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """The URL of a fresh, empty database of each backend (see the module docstring)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/k8s-sql.db"
        return
    server = database_server(request.param)
    name = server.create()
    try:
        yield server.database_url(name)
    finally:
        server.drop(name)


@pytest.fixture
def store(backend: str, run: Callable[..., Any], reactor: Any) -> Iterator[Any]:
    """An ``IStore`` on ``backend``'s fresh database, closed after the test."""
    from k8s_sql.store import open_store

    opened = run(open_store, backend, reactor)
    try:
        yield opened
    finally:
        run(opened.close)
