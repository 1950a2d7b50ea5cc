"""``SQLStore``: etcd's revision log on a SQL database, and ``open_store`` to get one."""

from __future__ import annotations

import dataclasses
import functools
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from k8s_sql.store import alarms, bulk, compaction, feed, hashing, leases, schema
from k8s_sql.store.checks import DEFAULT_MAX_TXN_OPS, check_delete, check_put, check_range, check_txn, is_read_only
from k8s_sql.store.errors import LeaseTTLTooLarge, RequestTooLarge
from k8s_sql.store.interfaces import IBulkLoad, IStore
from k8s_sql.store.model import (
    Alarm,
    AlarmType,
    DatabaseSize,
    DeleteRangeRequest,
    DeleteRangeResponse,
    Event,
    KeyValue,
    KVHash,
    Lease,
    LeaseTimeToLive,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    TxnRequest,
    TxnResponse,
)
from k8s_sql.store.pool import Database
from k8s_sql.store.reads import Reader
from k8s_sql.store.session import Session
from k8s_sql.store.url import DatabaseURL
from k8s_sql.store.writes import BatchFailure, Executor, apply

T = TypeVar("T")


def _deferred(method: Callable[..., Awaitable[T]]) -> Callable[..., defer.Deferred[T]]:
    """Expose an ``async def`` method as one returning a ``Deferred``, as ``IStore`` promises."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> defer.Deferred[T]:
        return defer.ensureDeferred(method(*args, **kwargs))

    return wrapper


def open_store(
    url: str,
    reactor: Any,
    *,
    max_txn_ops: int = DEFAULT_MAX_TXN_OPS,
    compaction_batch: int = compaction.DEFAULT_BATCH,
    rng: random.Random | None = None,
) -> defer.Deferred[SQLStore]:
    """Connect to the database at ``url``, creating the schema on first use; fires with the store.

    ``url`` is a database URL (``k8s_sql.store.url``; ``DEFAULT_URL`` when the user named none).
    Fails with ``ValueError`` for a bad URL, ``Unavailable`` when the database cannot be
    reached, and ``SchemaTooNew`` when a newer k8s-sql created its schema.  ``reactor``
    runs the connection pools and times retries; ``rng`` picks cluster and lease IDs.
    """
    return defer.ensureDeferred(_open(url, reactor, max_txn_ops, compaction_batch, rng or random.SystemRandom()))


async def _open(url: str, reactor: Any, max_txn_ops: int, compaction_batch: int, rng: random.Random) -> SQLStore:
    database = Database(DatabaseURL.parse(url), reactor)
    try:
        cluster_id = await database.write(schema.ensure, rng)
    except BaseException:
        database.close()
        raise
    store = SQLStore(database, cluster_id, max_txn_ops=max_txn_ops, compaction_batch=compaction_batch, rng=rng)
    await store.start()
    return store


def _range(session: Session, request: RangeRequest) -> RangeResponse:
    reader = Reader.snapshot(session)
    return reader.range(request, reader.revision)


def _database_size(session: Session) -> DatabaseSize:
    return session.dialect.database_size(session)


def _read_only_txn(session: Session, request: TxnRequest) -> TxnResponse:
    return Executor.read_only(session).txn(request)


#: The most writes one database transaction carries.
MAX_BATCH = 64


@dataclasses.dataclass
class _Write:
    """A write waiting for its turn, and the Deferred its caller awaits."""

    operation: Callable[..., Any]
    args: tuple
    done: defer.Deferred

    def answer(self, result: object) -> None:
        """Fire ``done`` with a response or a ``Failure``, unless the caller gave up."""
        if self.done.called:
            return
        if isinstance(result, Failure):
            self.done.errback(result)
        else:
            self.done.callback(result)


@implementer(IStore, IBulkLoad)
class SQLStore:
    """An ``IStore`` on a ``Database``; get one with ``open_store``.

    ``max_txn_ops`` bounds the operations of a transaction branch (etcd's
    ``--max-txn-ops``); ``compaction_batch`` is how many revisions one physical compaction
    step examines; ``rng`` picks lease IDs.
    """

    log = Logger()

    def __init__(
        self,
        database: Database,
        cluster_id: int,
        *,
        max_txn_ops: int = DEFAULT_MAX_TXN_OPS,
        compaction_batch: int = compaction.DEFAULT_BATCH,
        rng: random.Random | None = None,
    ) -> None:
        self.cluster_id = cluster_id
        #: The ``Database`` this store runs on.
        self.database = database
        self._max_txn_ops = max_txn_ops
        self._compaction_batch = compaction_batch
        self._rng = rng or random.SystemRandom()
        self._channel = f"k8s_sql_{cluster_id}"
        self._observers: list[Callable[[int], None]] = []
        self._background: set[defer.Deferred] = set()
        self._closing = False
        self._listener: Any = None
        self._queue: list[_Write] = []
        self._writing = False

    @_deferred
    async def range(self, request: RangeRequest) -> RangeResponse:
        """Run a range (see ``IStore``)."""
        check_range(request)
        return await self.database.read(_range, request)

    @_deferred
    async def put(self, request: PutRequest) -> PutResponse:
        """Run a put (see ``IStore``)."""
        check_put(request)
        self._check_key(request.key)
        return await self._write(Executor.put, request)

    @_deferred
    async def delete_range(self, request: DeleteRangeRequest) -> DeleteRangeResponse:
        """Run a delete (see ``IStore``)."""
        check_delete(request)
        return await self._write(Executor.delete_range, request)

    @_deferred
    async def txn(self, request: TxnRequest) -> TxnResponse:
        """Run a transaction (see ``IStore``); one that only reads runs on a reader."""
        check_txn(request, self._max_txn_ops)
        self._check_txn_keys(request)
        if is_read_only(request):
            return await self.database.read(_read_only_txn, request)
        return await self._write(Executor.txn, request)

    @_deferred
    async def compact(self, revision: int, physical: bool) -> int:
        """Compact at ``revision``; with ``physical``, fire once the rows are deleted."""
        current = await self._write(compaction.compact, revision)
        if physical:
            await self._compact_physically()
        else:
            self.resume_compaction()
        return current

    @_deferred
    async def current_revision(self) -> int:
        """The newest committed revision."""
        return (await self.database.read(Reader.snapshot)).revision

    @_deferred
    async def compact_revision(self) -> int:
        """The last compaction's revision, 0 when there was none."""
        return max((await self.database.read(Reader.snapshot)).compacted, 0)

    @_deferred
    async def changes(self, after: int, limit: int, from_compaction: bool = False) -> tuple[Event, ...]:
        """The events after revision ``after`` (see ``k8s_sql.store.feed``)."""
        return await self.database.read(feed.changes, after, limit, from_compaction)

    def notify_commits(self, observer: Callable[[int], None]) -> Callable[[], None]:
        """Call ``observer(revision)`` after commits (see ``IStore``); returns an unregister function."""
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)

    @_deferred
    async def lease_grant(self, lease_id: int, ttl: int, now: float) -> Lease:
        """Grant a lease expiring at ``now + ttl``."""
        if ttl > leases.MAX_LEASE_TTL:
            raise LeaseTTLTooLarge()
        return await self._write(leases.grant, lease_id, ttl, now, self._rng)

    @_deferred
    async def lease_revoke(self, lease_id: int) -> int:
        """Revoke a lease and delete its keys; fires with the revision after."""
        return await self._write(leases.revoke, lease_id)

    @_deferred
    async def lease_renew(self, lease_id: int, now: float) -> int:
        """Renew a lease from ``now``; its TTL, or 0 when unknown or expired."""
        return await self.database.write(leases.renew, lease_id, now)

    @_deferred
    async def lease_time_to_live(self, lease_id: int, keys: bool, now: float) -> LeaseTimeToLive:
        """A lease's remaining TTL at ``now``, with its keys when asked."""
        return await self.database.read(leases.time_to_live, lease_id, keys, now)

    @_deferred
    async def leases(self) -> list[int]:
        """Every lease's ID."""
        return await self.database.read(leases.all_ids)

    @_deferred
    async def expire_leases(self, now: float, limit: int) -> list[int]:
        """Revoke up to ``limit`` leases expired at ``now``, each in its own revision."""
        expired = await self.database.read(leases.expired, now, limit)
        return [lease_id for lease_id in expired if await self._write(leases.expire, lease_id, now)]

    @_deferred
    async def begin_load(self, revision: int, replace: bool) -> int:
        """Empty the store for a snapshot taken at ``revision`` (see ``IBulkLoad``)."""
        return await self._write(bulk.begin, revision, replace)

    @_deferred
    async def load_leases(self, loaded: Sequence[Lease]) -> None:
        """Add a snapshot's leases (see ``IBulkLoad``)."""
        await self._write(bulk.leases, loaded)

    @_deferred
    async def load_keys(self, kvs: Sequence[KeyValue]) -> None:
        """Add a snapshot's keys, in key order (see ``IBulkLoad``)."""
        for kv in kvs:
            self._check_key(kv.key)
        await self._write(bulk.keys, kvs)

    @_deferred
    async def hash_kv(self, revision: int) -> KVHash:
        """etcd's HashKV of the key space at ``revision`` (see ``k8s_sql.store.hashing``)."""
        return await self.database.read(hashing.hash_kv, revision)

    @_deferred
    async def database_size(self) -> DatabaseSize:
        """The size of the store's tables, as the dialect measures it."""
        return await self.database.read(_database_size)

    @_deferred
    async def defragment(self) -> None:
        """Reclaim the space of deleted rows, the dialect's way."""
        await self.database.maintain(self.database.dialect.defragment)

    @_deferred
    async def alarms(self) -> list[Alarm]:
        """Every raised alarm."""
        return await self.database.read(alarms.raised)

    @_deferred
    async def activate_alarm(self, member_id: int, alarm: AlarmType) -> Alarm:
        """Raise an alarm."""
        return await self.database.write(alarms.activate, member_id, alarm)

    @_deferred
    async def deactivate_alarm(self, member_id: int, alarm: AlarmType) -> Alarm | None:
        """Clear an alarm."""
        return await self.database.write(alarms.deactivate, member_id, alarm)

    @_deferred
    async def close(self) -> None:
        """Stop background work and close the connections."""
        self._closing = True
        if self._listener is not None:
            await self._listener.stop()
        await defer.DeferredList(list(self._background))
        self.database.close()

    @_deferred
    async def start(self) -> None:
        """Listen for other servers' commits where the database pushes them, and finish any
        interrupted compaction in the background; ``open_store`` calls this."""
        self._listener = await self.database.dialect.listen(self.database.reactor, self._channel, self._committed)
        self.resume_compaction()

    def resume_compaction(self) -> None:
        """Delete, in the background, the log rows compactions made unreadable."""
        run = defer.ensureDeferred(self._compact_physically())
        self._background.add(run)
        run.addBoth(self._compaction_ended, run)

    def _compaction_ended(self, result: object, run: defer.Deferred) -> None:
        self._background.discard(run)
        if isinstance(result, Failure):
            self.log.failure("physical compaction stopped; it resumes with the next compaction", result)

    async def _compact_physically(self) -> None:
        while not self._closing and await self.database.write(compaction.step, self._compaction_batch):
            pass

    async def _write(self, operation: Callable[..., T], *args: Any) -> T:
        """Run ``operation(executor, *args)`` holding the revision lock; report the commit.

        Writes that arrive while one is committing wait and then go together, in arrival
        order, in one database transaction (``writes.apply``): each still takes its own
        revision and gets its own answer, but they share one lock and one commit.
        """
        write = _Write(operation, args, defer.Deferred())
        self._queue.append(write)
        if not self._writing:
            self._writing = True
            defer.ensureDeferred(self._drain())
        return await write.done

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                await self._commit(batch)
        finally:
            self._writing = False

    async def _commit(self, batch: list[_Write]) -> None:
        """Commit ``batch``; a write refused with a ``StoreError`` is answered so and the
        others are committed without it."""
        while batch:
            try:
                if len(batch) == 1:
                    response, revision = await self.database.write(self._locked, batch[0].operation, batch[0].args)
                    responses = [response]
                else:
                    responses, revision = await self.database.write(
                        self._batched, [(w.operation, w.args) for w in batch]
                    )
            except BatchFailure as failed:
                batch.pop(failed.index).answer(Failure(failed.error))
                continue
            except Exception:
                failure = Failure()
                for write in batch:
                    write.answer(failure)
                return
            if revision is not None:
                self._committed(revision)
            for write, response in zip(batch, responses, strict=False):
                write.answer(response)
            return

    def _locked(self, session: Session, operation: Callable[..., T], args: tuple) -> tuple[T, int | None]:
        """One write in its own transaction."""
        (response,), revision = self._batched(session, [(operation, args)])
        return response, revision

    def _batched(
        self, session: Session, writes: Sequence[tuple[Callable[..., Any], tuple]]
    ) -> tuple[list[Any], int | None]:
        responses, revision = apply(session, writes)
        if revision is not None:
            session.dialect.announce(session.cursor, self._channel, revision)
        return responses, revision

    def _committed(self, revision: int) -> None:
        for observer in list(self._observers):
            try:
                observer(revision)
            except Exception:
                self.log.failure("commit observer {observer!r} failed", observer=observer)

    def _check_key(self, key: bytes) -> None:
        if len(key) > self.database.dialect.max_key_bytes:
            dialect = self.database.dialect
            raise RequestTooLarge(f"keys longer than {dialect.max_key_bytes} bytes do not fit in {dialect.name}")

    def _check_txn_keys(self, request: TxnRequest) -> None:
        for op in request.success + request.failure:
            if isinstance(op, PutRequest):
                self._check_key(op.key)
            elif isinstance(op, TxnRequest):
                self._check_txn_keys(op)
