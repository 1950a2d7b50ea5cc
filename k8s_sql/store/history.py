"""The revisions etcd's bbolt ``key`` bucket holds, read from the revision log.

etcd keeps one bucket entry per stored revision: the key is the 8-byte big-endian revision,
``_``, the 8-byte big-endian sub-revision and ``t`` for a tombstone; the value is the
marshalled ``mvccpb.KeyValue`` (a tombstone's holds only the key).  A compaction at C
removes the revisions at or below C except each key's latest one as of C, unless that is a
deletion.  Every ``k8s_log`` row is one stored revision with etcd's numbering, so the same
rows in the same order are etcd's bucket: HashKV hashes them (``k8s_sql.store.hashing``) and
Maintenance.Snapshot writes them (``History``).  Rows are read in batches, in (revision,
sub) order, inside the caller's transaction.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from k8s_sql.proto import wire
from k8s_sql.store import alarms
from k8s_sql.store.model import Alarm, Lease
from k8s_sql.store.reads import Reader
from k8s_sql.store.session import Session

#: Rows read per statement.
BATCH = 1000

_COLUMNS = "c.revision, c.sub, c.k, c.create_revision, c.version, c.lease, c.value, c.deleted"
#: After a (revision, sub) position; the first bound lets the database seek to it in the
#: primary key instead of scanning from the start of the range each batch.
_AFTER = "c.revision >= ? AND (c.revision > ? OR c.sub > ?)"
#: Rows at or below the compaction point that it keeps: the latest version of their key as
#: of a bound revision, unless a deletion.
_KEPT = (
    f"SELECT {_COLUMNS} FROM k8s_log c WHERE c.revision <= ? AND c.deleted = 0 AND {_AFTER}"
    " AND NOT EXISTS (SELECT 1 FROM k8s_log n WHERE n.k = c.k AND n.revision <= ?"
    " AND (n.revision > c.revision OR (n.revision = c.revision AND n.sub > c.sub)))"
    " ORDER BY c.revision, c.sub LIMIT ?"
)
#: Every row between the compaction point and a revision.
_RECENT = (
    f"SELECT {_COLUMNS} FROM k8s_log c WHERE c.revision > ? AND c.revision <= ? AND {_AFTER}"
    " ORDER BY c.revision, c.sub LIMIT ?"
)
_LEASES = "SELECT id, ttl, deadline FROM k8s_lease WHERE id > ? ORDER BY id LIMIT ?"

#: A ``k8s_log`` row as read here: revision, sub, key, create revision, version, lease,
#: value, deleted.
Row = tuple[int, int, bytes, int, int, int, bytes, int]


def kept_rows(session: Session, compacted: int, revision: int, bound: int) -> Iterator[Row]:
    """The stored revisions up to ``revision`` in order, as etcd keeps them after a compaction
    at ``compacted`` (-1: none): at or below it, each key's latest row as of ``bound`` unless
    a deletion; above it, every row."""
    if compacted > 0:
        yield from _rows(session, _KEPT, (compacted,), (bound,))
    yield from _rows(session, _RECENT, (max(compacted, 0), revision), ())


def _rows(session: Session, statement: str, before: tuple, after: tuple) -> Iterator[Row]:
    """The rows ``statement`` selects, fetched ``BATCH`` at a time in (revision, sub) order."""
    position = (0, 0, -1)
    while True:
        rows = session.all(statement, *before, *position, *after, BATCH)
        yield from rows
        if len(rows) < BATCH:
            return
        position = (rows[-1][0], rows[-1][0], rows[-1][1])


def bucket_entry(
    revision: int, sub: int, key: bytes, create: int, version: int, lease: int, value: bytes, deleted: int
) -> tuple[bytes, bytes]:
    """One log row as etcd stores it in its ``key`` bucket: (bucket key, marshalled ``KeyValue``)."""
    bucket_key = struct.pack(">Q", revision) + b"_" + struct.pack(">Q", sub)
    if deleted:
        return bucket_key + b"t", wire.bytes_field(b"\x0a", key)
    return bucket_key, wire.key_value(key, create, revision, version, bytes(value), lease)


@dataclass(frozen=True)
class History:
    """What one read-only transaction sees of the whole store, as an etcd snapshot holds it.

    ``revision`` is the current revision, ``compacted`` the last compaction (-1: none).
    Its methods read in ``session``, so only while its transaction is open.
    """

    session: Session
    revision: int
    compacted: int

    @classmethod
    def read(cls, session: Session) -> History:
        """The history ``session``'s transaction sees."""
        reader = Reader.snapshot(session)
        return cls(session, reader.revision, reader.compacted)

    def key_bucket(self) -> Iterator[tuple[bytes, bytes]]:
        """etcd's ``key`` bucket at the current revision: its entries, in order.

        Below the compaction point, what etcd's compaction keeps (each key's latest row as
        of it, unless a deletion), whether or not the rows were deleted physically yet.
        """
        for row in kept_rows(self.session, self.compacted, self.revision, self.compacted):
            yield bucket_entry(*row)

    def leases(self) -> Iterator[Lease]:
        """Every lease, by ID."""
        after = 0
        while True:
            rows = self.session.all(_LEASES, after, BATCH)
            yield from (Lease(*row) for row in rows)
            if len(rows) < BATCH:
                return
            after = rows[-1][0]

    def alarms(self) -> list[Alarm]:
        """Every raised alarm."""
        return alarms.raised(self.session)
