"""A k8s-sql database as either end of a copy, through the store.

``StoreSource`` reads every key at one revision in pages (``IStore.range`` pinned to it) and
the leases with the seconds they have left.  ``StoreSink`` loads a snapshot through
``IBulkLoad``: keys keep their revisions, the store's revision becomes the snapshot's (never
lower than its own), and leases get their remaining TTL again, counted from the load.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from k8s_sql.migrate.interfaces import ISnapshotSink, ISnapshotSource
from k8s_sql.migrate.snapshot import Batch, Pager, SnapshotHeader, next_key
from k8s_sql.store.interfaces import IBulkLoad, IStore
from k8s_sql.store.keys import ALL_FOLLOWING
from k8s_sql.store.model import Lease, RangeRequest

#: Where every key is: from the lowest possible key on, as etcdctl's ``--from-key ""``.
FIRST_KEY = b"\0"


@implementer(ISnapshotSource)
class StoreSource:
    """The snapshot of a store; ``clock`` tells the leases' remaining time."""

    def __init__(self, store: IStore, clock: IReactorTime, description: str, pager: Pager | None = None) -> None:
        self.description = description
        #: The store read.
        self.store = store
        self._clock = clock
        self._pager = pager or Pager()
        self._revision = 0
        self._next: bytes | None = FIRST_KEY
        self._leases_read = False

    async def open(self, revision: int = 0) -> SnapshotHeader:
        """Pin ``revision`` (0: the current one)."""
        at = revision or await self.store.current_revision()
        counted = await self.store.range(RangeRequest(FIRST_KEY, ALL_FOLLOWING, revision=at, count_only=True))
        self._revision, self._next, self._leases_read = at, FIRST_KEY, False
        return SnapshotHeader(at, await self.store.compact_revision(), counted.count, self.description)

    async def read(self) -> Batch | None:
        """Every lease with the first page of keys, then a page at a time."""
        leases = ()
        if not self._leases_read:
            self._leases_read = True
            now = self._clock.seconds()
            leases = tuple(
                [await self.store.lease_time_to_live(lease, False, now) for lease in await self.store.leases()]
            )
        if self._next is None:
            return Batch(leases) if leases else None
        page = await self.store.range(
            RangeRequest(self._next, ALL_FOLLOWING, limit=self._pager.limit, revision=self._revision)
        )
        self._pager.measured(page.kvs)
        self._next = next_key(page.kvs[-1].key) if page.more else None
        return Batch(leases, page.kvs)


@implementer(ISnapshotSink)
class StoreSink:
    """Loads a snapshot into a store; ``replace`` lets it replace keys and leases already there.

    ``clock`` (the one lease deadlines are kept on: the reactor's) restarts each lease's
    remaining TTL; expired ones get a deadline of now, so the first sweep revokes them.
    """

    def __init__(self, store: IBulkLoad, clock: IReactorTime, replace: bool = False) -> None:
        self._store = store
        self._clock = clock
        self._replace = replace
        #: The store's revision once the load began: the snapshot's, or the store's own if higher.
        self.revision = 0

    async def begin(self, header: SnapshotHeader) -> None:
        """Empty the store for the snapshot (``NotEmpty`` if it holds data, unless replacing)."""
        self.revision = await self._store.begin_load(header.revision, self._replace)

    async def add(self, batch: Batch) -> None:
        """Load the batch's leases, then its keys."""
        if batch.leases:
            now = self._clock.seconds()
            await self._store.load_leases(
                [Lease(lease.id, lease.granted_ttl, now + max(lease.ttl, 0)) for lease in batch.leases]
            )
        if batch.kvs:
            await self._store.load_keys(batch.kvs)

    async def finish(self) -> None:
        """Nothing left to do: each batch was committed as it was added."""
