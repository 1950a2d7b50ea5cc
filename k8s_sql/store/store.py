"""``SQLStore``: etcd's revision log on a SQL database, and ``open_store`` to get one."""

from __future__ import annotations

import functools
import random
from collections.abc import Awaitable, Callable, Collection, Coroutine, Sequence
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from k8s_sql.store import alarms, bulk, compaction, feed, hashing, leases, members, schema
from k8s_sql.store.checks import DEFAULT_MAX_TXN_OPS, check_delete, check_put, check_range, check_txn, is_read_only
from k8s_sql.store.errors import LeaseTTLTooLarge, RequestTooLarge, Unavailable
from k8s_sql.store.history import History
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
    MemberRecord,
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
from k8s_sql.store.signals import CommitObserver, CommitSignals
from k8s_sql.store.url import DatabaseURL
from k8s_sql.store.writequeue import Write, WriteQueue
from k8s_sql.store.writes import Executor, apply

T = TypeVar("T")


def _deferred(method: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., defer.Deferred[T]]:
    """Expose an ``async def`` method as one returning a ``Deferred``, as ``IStore`` promises."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> defer.Deferred[T]:
        return defer.ensureDeferred(method(*args, **kwargs))

    return wrapper


def open_store(url: str, reactor: Any, **options: Any) -> defer.Deferred[SQLStore]:
    """A ``SQLStore(url, reactor, **options)``, opened: fires with it once ``open`` has."""
    return SQLStore(url, reactor, **options).open()


def _range(session: Session, request: RangeRequest) -> RangeResponse:
    reader = Reader.snapshot(session)
    return reader.range(request, reader.revision)


def _snapshot(session: Session, write: Callable[[History], T]) -> T:
    return write(History.read(session))


def _database_size(session: Session) -> DatabaseSize:
    return session.dialect.database_size(session)


def _read_only_txn(session: Session, request: TxnRequest) -> TxnResponse:
    return Executor.read_only(session).txn(request)


@implementer(IStore, IBulkLoad)
class SQLStore:
    """An ``IStore`` on the database at ``url`` (``k8s_sql.store.url``), usable once ``open``
    has fired; ``open_store`` does both.

    ``reactor`` runs the connection pools and times retries and polls; ``max_txn_ops``
    bounds the operations of a transaction branch (etcd's ``--max-txn-ops``);
    ``compaction_batch`` is how many revisions one physical compaction step examines;
    ``poll_interval`` is how often ``signals`` polls for commits nothing announced
    (``None``: never); ``rng`` picks cluster and lease IDs.  Constructing it checks the URL
    (``ValueError``) and touches nothing.
    """

    log = Logger()

    def __init__(
        self,
        url: str,
        reactor: Any,
        *,
        max_txn_ops: int = DEFAULT_MAX_TXN_OPS,
        compaction_batch: int = compaction.DEFAULT_BATCH,
        poll_interval: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.url = DatabaseURL.parse(url)
        self.reactor = reactor
        #: This database's cluster ID, once open.
        self.cluster_id = 0
        #: The secret of the servers' commit signals to each other, once open.
        self.peer_secret = b""
        #: The ``Database`` this store runs on, once open.
        self.database: Database
        self._max_txn_ops = max_txn_ops
        self._compaction_batch = compaction_batch
        self._rng = rng or random.SystemRandom()
        self._channel = ""
        #: News of commits: this store's own, the database's announcements, polls.
        self.signals = CommitSignals(reactor, poll_interval, self._listen)
        self._background: set[defer.Deferred] = set()
        self._closing = False
        self._opened = False
        self._writes = WriteQueue(self._run_batch, self.signals.local)

    @_deferred
    async def open(self) -> SQLStore:
        """Connect, creating the schema on first use; start the commit signals (the
        database's push channel, polling); finish any interrupted compaction in the
        background.  Fires with the store itself.

        Fails with ``Unavailable`` when the database cannot be reached and ``SchemaTooNew``
        when a newer k8s-sql created its schema; the connections are closed then.
        """
        database = Database(self.url, self.reactor)
        try:
            self.cluster_id, self.peer_secret = await database.write(schema.ensure, self._rng)
        except BaseException:
            database.close()
            raise
        self.database = database
        self._channel = f"k8s_sql_{self.cluster_id}"
        self._opened = True
        try:
            await self.signals.start()
        except BaseException:
            await self.close()
            raise
        self.resume_compaction()
        return self

    def _listen(self, observer: Callable[[int], None]) -> Awaitable[Any]:
        return self.database.dialect.listen(self.reactor, self._channel, observer)

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

    def notify_commits(self, observer: CommitObserver) -> Callable[[], None]:
        """Call ``observer`` on every commit signal (see ``IChangeLog``); returns an unregister function."""
        return self.signals.subscribe(observer)

    def notify_local_commits(self, observer: Callable[[int], None]) -> Callable[[], None]:
        """Call ``observer`` after each commit of this store's own; returns an unregister function."""
        return self.signals.subscribe_local(observer)

    @_deferred
    async def register_member(
        self, record: MemberRecord, now: float, replace: Collection[int] = ()
    ) -> list[MemberRecord]:
        """Register a server process (see ``IClusterStore``)."""
        return await self.database.write(members.register, record, now, tuple(replace))

    @_deferred
    async def renew_member(
        self, record: MemberRecord, now: float, forget_before: float
    ) -> tuple[list[MemberRecord], bool]:
        """Beat for a server process (see ``IClusterStore``)."""
        return await self.database.write(members.renew, record, now, forget_before)

    @_deferred
    async def deregister_member(self, instance: int) -> None:
        """Remove a server process's row."""
        await self.database.write(members.deregister, instance)

    @_deferred
    async def live_members(self, now: float) -> list[MemberRecord]:
        """The processes whose rows have not expired at ``now``."""
        return await self.database.read(members.live, now)

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
    async def snapshot(self, write: Callable[[History], T]) -> T:
        """Run ``write`` on the ``History`` of one read transaction of its own (see ``IMaintenanceStore``)."""
        return await self.database.read_alone(_snapshot, write)

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
        """Stop background work and close the connections (nothing to do if never opened)."""
        if not self._opened or self._closing:
            return
        self._closing = True
        await self.signals.stop()
        await defer.DeferredList(list(self._background))
        self.database.close()

    def resume_compaction(self) -> None:
        """Delete, in the background, the log rows compactions made unreadable."""
        run = defer.ensureDeferred(self._compact_physically())
        self._background.add(run)
        run.addBoth(self._compaction_ended, run)

    def _compaction_ended(self, result: object, run: defer.Deferred) -> None:
        self._background.discard(run)
        if isinstance(result, Failure):
            if result.check(Unavailable):  # the outage is reported once, by the database
                self.log.info("physical compaction stopped by the database outage; it resumes with the next compaction")
            else:
                self.log.failure("physical compaction stopped; it resumes with the next compaction", result)

    async def _compact_physically(self) -> None:
        while not self._closing and await self.database.write(compaction.step, self._compaction_batch):
            pass

    async def _write(self, operation: Callable[..., T], *args: Any) -> T:
        """Run ``operation(executor, *args)`` holding the revision lock, in a transaction it
        may share with writes waiting at the same time (``k8s_sql.store.writequeue``)."""
        return await self._writes.write(operation, args)

    def _run_batch(self, batch: list[Write]) -> defer.Deferred[tuple[list[Any], int | None]]:
        if len(batch) == 1:  # named after its operation in transaction logs and metrics
            return defer.ensureDeferred(self.database.write(self._locked, *batch[0]))
        return defer.ensureDeferred(self.database.write(self._batched, batch))

    def _locked(self, session: Session, operation: Callable[..., T], args: tuple) -> tuple[list[T], int | None]:
        """One write in its own transaction."""
        return self._batched(session, [(operation, args)])

    def _batched(self, session: Session, writes: Sequence[Write]) -> tuple[list[Any], int | None]:
        responses, revision = apply(session, writes)
        if revision is not None:
            session.dialect.announce(session.cursor, self._channel, revision)
        return responses, revision

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
