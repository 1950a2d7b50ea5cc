"""etcd's HashKV over the revision log: the same CRC-32C etcd computes for the same history.

etcd hashes its bbolt ``key`` bucket: the bucket's name, then for each stored revision in
order its bucket key (8-byte big-endian revision, ``_``, 8-byte big-endian sub, ``t`` for a
tombstone) and its value (the marshalled ``mvccpb.KeyValue``; a tombstone's holds only the
key).  Revisions above the one hashed are left out, and so are those at or below the last
compaction that compaction does not keep: only each key's latest version as of the hashed
revision, unless it is a deletion.  (When no key exists at that revision, etcd hashes what
compaction left instead: each key's latest version at the compaction point, unless deleted.)

Every ``k8s_log`` row is one stored revision with etcd's numbering, so hashing the rows the
same way gives etcd's value: equal on every server sharing the database, and equal to a
real etcd's after the same requests.  Rows are read in batches inside one snapshot.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import crc32c

from k8s_sql.proto import wire
from k8s_sql.store.errors import FutureRevision
from k8s_sql.store.keys import ALL_FOLLOWING, KeyRange
from k8s_sql.store.model import KVHash
from k8s_sql.store.reads import Reader
from k8s_sql.store.session import Session

#: The name of etcd's bucket of revisions, which its hash starts with.
BUCKET = b"key"

#: Rows read per statement.
BATCH = 1000

_COLUMNS = "c.revision, c.sub, c.k, c.create_revision, c.version, c.lease, c.value, c.deleted"
_AFTER = "(c.revision > ? OR (c.revision = ? AND c.sub > ?))"
#: Rows at or below the compaction point that it keeps: the latest version of their key as
#: of a bound revision, unless a deletion.
_KEPT = (
    f"SELECT {_COLUMNS} FROM k8s_log c WHERE c.revision <= ? AND c.deleted = 0 AND {_AFTER}"
    " AND NOT EXISTS (SELECT 1 FROM k8s_log n WHERE n.k = c.k AND n.revision <= ?"
    " AND (n.revision > c.revision OR (n.revision = c.revision AND n.sub > c.sub)))"
    " ORDER BY c.revision, c.sub LIMIT ?"
)
#: Every row between the compaction point and the hashed revision.
_RECENT = (
    f"SELECT {_COLUMNS} FROM k8s_log c WHERE c.revision > ? AND c.revision <= ? AND {_AFTER}"
    " ORDER BY c.revision, c.sub LIMIT ?"
)

_EVERY_KEY = KeyRange.of(ALL_FOLLOWING, ALL_FOLLOWING)


def hash_kv(session: Session, revision: int) -> KVHash:
    """etcd's HashKV at ``revision`` (0: the current revision), in ``session``'s snapshot.

    Fails as etcd 3.6 does: ``Compacted`` below the last compaction (at it is allowed),
    ``FutureRevision`` above the current revision.
    """
    reader = Reader.snapshot(session)
    if revision > reader.revision:
        raise FutureRevision()
    if revision <= 0:
        revision = reader.revision
    compacted = reader.compacted
    if revision < compacted:
        raise reader.compacted_error()
    checksum = crc32c.crc32c(BUCKET)
    if compacted > 0:
        bound = revision if reader.count(_EVERY_KEY, revision) else compacted
        for row in _rows(session, _KEPT, (compacted,), (bound,)):
            checksum = crc32c.crc32c(encode(*row), checksum)
    for row in _rows(session, _RECENT, (max(compacted, 0), revision), ()):
        checksum = crc32c.crc32c(encode(*row), checksum)
    return KVHash(checksum, revision, compacted, reader.revision)


def _rows(session: Session, statement: str, before: tuple, after: tuple) -> Iterator[tuple]:
    """The rows ``statement`` selects, fetched ``BATCH`` at a time in (revision, sub) order."""
    position = (0, 0, -1)
    while True:
        rows = session.all(statement, *before, *position, *after, BATCH)
        yield from rows
        if len(rows) < BATCH:
            return
        position = (rows[-1][0], rows[-1][0], rows[-1][1])


def encode(
    revision: int, sub: int, key: bytes, create: int, version: int, lease: int, value: bytes, deleted: int
) -> bytes:
    """One log row as etcd stores it in bbolt: bucket key, then marshalled ``KeyValue``."""
    bucket_key = struct.pack(">Q", revision) + b"_" + struct.pack(">Q", sub)
    if deleted:
        return bucket_key + b"t" + wire.bytes_field(b"\x0a", key)
    return bucket_key + wire.key_value(key, create, revision, version, bytes(value), lease)
