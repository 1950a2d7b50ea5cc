"""etcd's HashKV over the revision log: the same CRC-32C etcd computes for the same history.

etcd hashes its bbolt ``key`` bucket: the bucket's name, then for each stored revision in
order its bucket key (8-byte big-endian revision, ``_``, 8-byte big-endian sub, ``t`` for a
tombstone) and its value (the marshalled ``mvccpb.KeyValue``; a tombstone's holds only the
key).  Revisions above the one hashed are left out, and so are those at or below the last
compaction that compaction does not keep: only each key's latest version as of the hashed
revision, unless it is a deletion.  (When no key exists at that revision, etcd hashes what
compaction left instead: each key's latest version at the compaction point, unless deleted.)

Every ``k8s_log`` row is one stored revision with etcd's numbering (``k8s_sql.store.history``
reads them), so hashing the rows the same way gives etcd's value: equal on every server
sharing the database, and equal to a real etcd's after the same requests.
"""

from __future__ import annotations

import crc32c

from k8s_sql.store.errors import FutureRevision
from k8s_sql.store.history import bucket_entry, kept_rows
from k8s_sql.store.keys import ALL_FOLLOWING, KeyRange
from k8s_sql.store.model import KVHash
from k8s_sql.store.reads import Reader
from k8s_sql.store.session import Session

#: The name of etcd's bucket of revisions, which its hash starts with.
BUCKET = b"key"

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
    bound = revision if compacted <= 0 or reader.count(_EVERY_KEY, revision) else compacted
    checksum = crc32c.crc32c(BUCKET)
    for row in kept_rows(session, compacted, revision, bound):
        key, value = bucket_entry(*row)
        checksum = crc32c.crc32c(value, crc32c.crc32c(key, checksum))
    return KVHash(checksum, revision, compacted, reader.revision)
