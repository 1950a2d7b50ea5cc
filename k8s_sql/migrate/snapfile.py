"""An etcd snapshot file as the source of a copy: ``etcdctl snapshot save``'s, or a data
directory's ``member/snap/db``.

etcd's ``key`` bucket lists revisions in revision order, and a load wants each live key's
latest version in key order.  ``open`` therefore reads the whole file once, in the
reactor's thread pool: it checks the sha256 trailer (a file without one is refused unless
``skip_hash_check``, as ``etcdutl snapshot restore`` does), walks the bbolt file with
``k8s_sql.snapshot.reader`` (which checks every page), and keeps each key's latest version,
or its deletion, in a scratch SQLite database on disk, which sorts them by key without
holding them in memory.  Any damage is thus found before anything is written to the target.
``read`` then gives every lease, and the live keys in key order, a batch at a time.

The snapshot's revision is etcd's after a restore: the last stored revision, or the
compaction revision if higher.  Leases get etcd's remaining TTL if it checkpointed one,
else their whole TTL, as etcd gives them when it starts from the file.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar

from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer

from k8s_sql.migrate.interfaces import ISnapshotSource
from k8s_sql.migrate.snapshot import Batch, SnapshotHeader
from k8s_sql.snapshot.bbolt import SnapshotError
from k8s_sql.snapshot.digest import DIGEST_SIZE, has_digest, verify_digest
from k8s_sql.snapshot.layout import EtcdSnapshot, Record
from k8s_sql.snapshot.reader import BoltReader
from k8s_sql.store.model import KeyValue, LeaseTimeToLive

T = TypeVar("T")

#: Stored revisions collapsed in memory before they go to the scratch database.
SCRATCH_BATCH = 1000

_SCRATCH_SCHEMA = (
    "CREATE TABLE live (k BLOB NOT NULL PRIMARY KEY, create_revision INTEGER NOT NULL,"
    " mod_revision INTEGER NOT NULL, version INTEGER NOT NULL, value BLOB NOT NULL, lease INTEGER NOT NULL)"
    " WITHOUT ROWID"
)
_PUT = "INSERT OR REPLACE INTO live VALUES (?, ?, ?, ?, ?, ?)"
_DELETE = "DELETE FROM live WHERE k = ?"
_PAGE = "SELECT k, create_revision, mod_revision, version, value, lease FROM live WHERE k > ? ORDER BY k LIMIT ?"


class _Scratch:
    """The live keys of a snapshot, as its revisions are replayed, in a temporary SQLite database."""

    def __init__(self) -> None:
        # An empty name: a private database in a temporary file, deleted when closed.
        self._db = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = OFF")
        self._db.execute("PRAGMA synchronous = OFF")
        self._db.execute(_SCRATCH_SCHEMA)

    def replay(self, records: list[Record]) -> None:
        """Apply revisions in order: a key's last one wins, a tombstone deletes it."""
        latest: dict[bytes, KeyValue | None] = {}
        for record in records:
            latest[record.kv.key] = None if record.tombstone else record.kv
        self._db.execute("BEGIN")
        self._db.executemany(_DELETE, [(key,) for key, kv in latest.items() if kv is None])
        self._db.executemany(
            _PUT,
            [
                (kv.key, kv.create_revision, kv.mod_revision, kv.version, kv.value, kv.lease)
                for kv in latest.values()
                if kv is not None
            ],
        )
        self._db.execute("COMMIT")

    def count(self) -> int:
        """How many keys are live."""
        return self._db.execute("SELECT COUNT(*) FROM live").fetchone()[0]

    def page(self, after: bytes, keys: int, size: int) -> list[KeyValue]:
        """The live keys after ``after``, in order: at most ``keys``, and no more once ``size``
        bytes of keys and values are reached."""
        page: list[KeyValue] = []
        total = 0
        for row in self._db.execute(_PAGE, (after, keys)):
            kv = KeyValue(row[0], row[1], row[2], row[3], row[4], row[5])
            page.append(kv)
            total += len(kv.key) + len(kv.value)
            if total >= size:
                break
        return page

    def close(self) -> None:
        """Delete the database."""
        self._db.close()


@implementer(ISnapshotSource)
class SnapshotFileSource:
    """The live keys and leases in the etcd snapshot file at ``path``.

    Batches hold up to ``batch_keys`` keys or about ``batch_bytes`` of keys and values.
    """

    def __init__(
        self,
        path: str,
        reactor: Any,
        *,
        skip_hash_check: bool = False,
        batch_keys: int = 1000,
        batch_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.path = path
        self.description = f"etcd snapshot {path}"
        self._reactor = reactor
        self._skip_hash_check = skip_hash_check
        self._batch_keys = batch_keys
        self._batch_bytes = batch_bytes
        self._scratch: _Scratch | None = None
        self._header: SnapshotHeader | None = None
        self._leases: tuple[LeaseTimeToLive, ...] = ()
        self._leases_read = False
        self._next: bytes | None = b""

    async def open(self, revision: int = 0) -> SnapshotHeader:
        """Read and check the file (once), and start reading from its first key.

        ``revision`` must be 0 or the snapshot's.  ``SnapshotError`` for a file that is
        not an intact etcd snapshot.
        """
        if self._header is None:
            self._header = await self._blocking(self._load)
        if revision and revision != self._header.revision:
            raise SnapshotError(f"{self.path} holds revision {self._header.revision}, not {revision}")
        self._leases_read, self._next = False, b""
        return self._header

    async def read(self) -> Batch | None:
        """Every lease with the first page of keys, then a page at a time."""
        assert self._scratch is not None, "open() reads the file"
        leases: tuple[LeaseTimeToLive, ...] = ()
        if not self._leases_read:
            self._leases_read, leases = True, self._leases
        if self._next is None:
            return Batch(leases) if leases else None
        kvs = await self._blocking(self._scratch.page, self._next, self._batch_keys, self._batch_bytes)
        self._next = kvs[-1].key if kvs else None
        if not (kvs or leases):
            return None
        return Batch(leases, tuple(kvs))

    async def close(self) -> None:
        """Delete the scratch database."""
        scratch, self._scratch, self._header = self._scratch, None, None
        if scratch is not None:
            await self._blocking(scratch.close)

    def _load(self) -> SnapshotHeader:
        """Check the file and replay its revisions into a new scratch database (in a thread)."""
        with open(self.path, "rb") as file:
            try:
                return self._replay(file)
            except SnapshotError as error:
                raise SnapshotError(f"{self.path}: {error}") from None

    def _replay(self, file: BinaryIO) -> SnapshotHeader:
        size = os.fstat(file.fileno()).st_size
        if has_digest(size):
            verify_digest(file, size)
            size -= DIGEST_SIZE
        elif not self._skip_hash_check:
            raise SnapshotError(
                "the file does not end with the sha256 digest etcdctl snapshot save appends: it is truncated,"
                " or a db file copied from an etcd data directory (import that with --skip-hash-check)"
            )
        snapshot = EtcdSnapshot(BoltReader(file, size))
        scratch = _Scratch()
        try:
            last = 0
            records: list[Record] = []
            for record in snapshot.records():
                records.append(record)
                last = record.revision
                if len(records) >= SCRATCH_BATCH:
                    scratch.replay(records)
                    records = []
            scratch.replay(records)
            self._leases = tuple(
                LeaseTimeToLive(lease.ID, lease.RemainingTTL or lease.TTL, lease.TTL) for lease in snapshot.leases()
            )
            header = SnapshotHeader(
                max(last, snapshot.compacted, 1), snapshot.compacted, scratch.count(), self.description
            )
        except BaseException:
            scratch.close()
            raise
        self._scratch = scratch
        return header

    async def _blocking(self, function: Callable[..., T], *args: Any) -> T:
        return await deferToThreadPool(self._reactor, self._reactor.getThreadPool(), function, *args)
