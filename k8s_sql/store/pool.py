"""The store's database: URL → dialect, a writer pool and a reader pool, and the policy
for database failures.

Every write runs one function in one database transaction (``runInteraction``) on a pool
thread; reads waiting together share one read transaction (``k8s_sql.store.readqueue``).
Deadlocks and serialization failures are retried after a short pause.  A
connection found dead before commit is dropped and the transaction run again on another,
so a database that comes back is used again at once; a failure at commit, or one that
persists, is reported as ``Unavailable``, naming the database without its password.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from twisted.enterprise import adbapi
from twisted.internet import defer, task, threads
from twisted.logger import Logger
from twisted.python.failure import Failure

from k8s_sql.store.dialects.base import Fault
from k8s_sql.store.errors import StoreError, Unavailable
from k8s_sql.store.interfaces import IDialect
from k8s_sql.store.outage import OutageLog
from k8s_sql.store.readqueue import Read, ReadQueue
from k8s_sql.store.session import Session
from k8s_sql.store.url import DatabaseURL

T = TypeVar("T")

#: ``observer(writer, name, seconds, error)``: see ``Database.observe_transactions``.
TransactionObserver = Callable[[bool, str, float, "BaseException | None"], None]

#: How often a transaction that hit a deadlock or a serialization failure is tried.
ATTEMPTS = 12

#: Pause before the n-th retry: FIRST_PAUSE * 2**n seconds, at most MAX_PAUSE.
FIRST_PAUSE = 0.005
MAX_PAUSE = 0.5

#: The default pool size (connections, and threads) for the URL option ``writers``; the
#: dialect gives the default for ``readers``.
WRITERS = 4


def load_dialect(url: DatabaseURL) -> IDialect:
    """The dialect for ``url``'s backend; ``ValueError`` when its driver is missing."""
    try:
        module = importlib.import_module(f"k8s_sql.store.dialects.{url.backend}")
    except ImportError as error:
        raise ValueError(
            f"the {url.backend} backend needs its driver: pip install 'k8s-sql[{url.backend}]' ({error})"
        ) from None
    return module.Dialect(url)


class _NotCommitted(Exception):
    """A driver error raised before commit: nothing was written."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


class Database:
    """A database reached through a dialect, with a writer pool and a reader pool.

    ``reactor`` provides the pools' threads and the pauses between retries.
    """

    log = Logger()

    def __init__(self, url: DatabaseURL, reactor: Any) -> None:
        self.url = url
        self.dialect = load_dialect(url)
        self.reactor = reactor
        self._writer = self.dialect.connection_pool(reactor, True, url.integer("writers", WRITERS))
        self._reader = self.dialect.connection_pool(
            reactor, False, url.integer("readers", self.dialect.default_readers)
        )
        self._reads = ReadQueue(reactor, self._reader.max, lambda group: defer.ensureDeferred(self._read_group(group)))
        self._closed = False
        self._observers: list[TransactionObserver] = []
        self.outage = OutageLog(str(url), reactor)

    async def write(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(session, *args)`` in a write transaction."""
        return await self._observed(True, function, args, self._attempts(self._writer, True, function, args))

    async def read(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(session, *args)`` in a read-only snapshot transaction, taken after
        the call; reads waiting at the same time may share it."""
        return await self._observed(False, function, args, self._reads.read(function, args))

    async def read_alone(self, function: Callable[..., T], *args: Any) -> T:
        """As ``read``, in a transaction of its own: for a long read (a snapshot of the whole
        store) that would hold up the reads sharing its transaction."""
        return await self._observed(False, function, args, self._reads.read(function, args, alone=True))

    async def maintain(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(connection, *args)`` on a connection of its own, outside any transaction.

        For maintenance statements that cannot run in a transaction; it runs on a writer
        thread, and failures are reported as ``Unavailable``.
        """
        if self._closed:
            raise Unavailable(f"the connections to database {self.url} are closed")

        def work() -> T:
            connection = self.dialect.connect()
            try:
                return function(connection, *args)
            finally:
                connection.close()

        try:
            return await threads.deferToThreadPool(self.reactor, self._writer.threadpool, work)
        except Exception as error:
            self.log.warn("maintenance of database {url} failed: {error}", url=str(self.url), error=error)
            raise Unavailable(f"maintenance of database {self.url} failed: {error}") from error

    def observe_transactions(self, observer: TransactionObserver) -> Callable[[], None]:
        """Call ``observer(writer, name, seconds, error)`` as each call of ``write`` or ``read`` ends.

        ``name`` names the function run, ``seconds`` is the reactor time from the call
        to its outcome (waiting for a connection and retries included), ``error`` is the
        exception it failed with or ``None``.  For metrics and slow-transaction logs; it
        must not block.  Returns a function that unregisters ``observer``.
        """
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)

    def close(self) -> None:
        """Close every connection; later calls fail with ``Unavailable``."""
        if not self._closed:
            self._closed = True
            self._reads.close(Unavailable(f"the connections to database {self.url} are closed"))
            self._writer.close()
            self._reader.close()

    async def _observed(self, writer: bool, function: Callable[..., T], args: tuple, outcome: Awaitable[T]) -> T:
        """Await ``outcome``, the transaction running ``function``, and report it to the observers."""
        started = self.reactor.seconds()
        error: BaseException | None = None
        try:
            return await outcome
        except BaseException as failed:
            error = failed
            raise
        finally:
            seconds, name = self.reactor.seconds() - started, _name(function, args)
            for observer in list(self._observers):
                try:
                    observer(writer, name, seconds, error)
                except Exception:
                    self.log.failure("transaction observer {observer!r} failed", observer=observer)

    async def _read_group(self, group: list[Read]) -> list[Any]:
        """Run reads in one transaction: each one's result, or its ``Failure`` when it failed alone.

        A group failing with ``Unavailable`` (the dialect's verdict on the database) fails
        every read of it; failing otherwise, each read runs again in a transaction of its
        own, so that only the one at fault fails.
        """
        if len(group) > 1:
            try:
                return await self._attempts(self._reader, False, _each, (group,))
            except Unavailable:
                raise
            except Exception:
                pass  # one read's own failure: running each alone tells which
        outcomes = []
        for function, args in group:
            try:
                outcomes.append(await self._attempts(self._reader, False, function, args))
            except Exception:
                outcomes.append(Failure())
        return outcomes

    async def _attempts(self, pool: adbapi.ConnectionPool, writer: bool, function: Callable[..., T], args: tuple) -> T:
        attempt = reconnects = 0
        while True:
            attempt += 1
            if self._closed:
                raise Unavailable(f"the connections to database {self.url} are closed")
            try:
                result = await pool.runInteraction(self._transaction, writer, function, args)
            except StoreError:
                self.outage.answered()
                raise
            except _NotCommitted as failed:
                error, committed = failed.error, False
            except Exception as failed:
                error, committed = failed, True
            else:
                self.outage.answered()
                return result
            fault = self._fault(error)
            if fault is Fault.RETRY and attempt < ATTEMPTS:
                await task.deferLater(self.reactor, min(FIRST_PAUSE * 2**attempt, MAX_PAUSE))
                continue
            if fault is Fault.UNAVAILABLE and not committed and reconnects < pool.max:
                reconnects += 1
                continue
            if fault is None:
                raise error
            self.outage.failed(error)
            raise Unavailable(f"database {self.url} is unavailable: {error}") from error

    def _transaction(self, cursor: Any, writer: bool, function: Callable[..., T], args: tuple) -> T:
        """One pool-thread transaction; driver errors are marked as raised before commit."""
        try:
            with self.dialect.transaction(cursor, writer):
                session = Session(cursor, self.dialect)
                result = function(session, *args)
                session.flush()
                return result
        except StoreError:
            raise
        except Exception as error:
            raise _NotCommitted(error) from error

    def _fault(self, error: Exception) -> Fault | None:
        if isinstance(error, adbapi.ConnectionLost):
            return Fault.UNAVAILABLE
        return self.dialect.fault(error)


def _each(session: Session, group: list[Read]) -> list[Any]:
    """Run each read of ``group`` in ``session``; a read refused with a ``StoreError`` gets its ``Failure``."""
    outcomes: list[Any] = []
    for function, args in group:
        try:
            outcomes.append(function(session, *args))
        except StoreError:
            outcomes.append(Failure())
    return outcomes


def _name(function: Callable[..., Any], args: tuple) -> str:
    """``module.function``, with the operation it runs when its first argument is one."""
    name = _qualified(function)
    if args and callable(args[0]):
        name += f"({_qualified(args[0])})"
    return name


def _qualified(function: Any) -> str:
    module = getattr(function, "__module__", None) or ""
    qualname = getattr(function, "__qualname__", None) or repr(function)
    return f"{module.rpartition('.')[2]}.{qualname}".lstrip(".")
