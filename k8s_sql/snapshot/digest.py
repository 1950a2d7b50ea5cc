"""The sha256 trailer of an etcd snapshot file.

etcd's Maintenance.Snapshot sends the bbolt file, then its sha256 digest as one more
message; ``etcdctl snapshot save`` writes both, and ``etcdutl snapshot restore`` checks the
digest.  A file has the trailer when its size is 32 bytes past a multiple of 512 (a bbolt
file is whole pages), which is how etcd tells.
"""

from __future__ import annotations

import hashlib
import os
from typing import BinaryIO

from k8s_sql.snapshot.bbolt import SnapshotError

#: The trailer's size: one sha256 digest.
DIGEST_SIZE = hashlib.sha256().digest_size

#: How much of the file is hashed at a time.
CHUNK = 1024 * 1024


def has_digest(size: int) -> bool:
    """Whether a file of ``size`` bytes ends with a digest, as etcd decides it."""
    return size % 512 == DIGEST_SIZE


def verify_digest(file: BinaryIO, size: int) -> None:
    """Check that the last 32 of the ``size`` bytes of ``file`` are the sha256 of the others."""
    fd = file.fileno()
    digest = hashlib.sha256()
    offset, end = 0, size - DIGEST_SIZE
    while offset < end:
        data = os.pread(fd, min(CHUNK, end - offset), offset)
        if not data:
            break
        digest.update(data)
        offset += len(data)
    if offset != end or os.pread(fd, DIGEST_SIZE, end) != digest.digest():
        raise SnapshotError("the file's sha256 does not match its contents: it is damaged or truncated")
