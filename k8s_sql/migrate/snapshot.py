"""What a copy moves: a snapshot's header, then batches of leases and keys.

Keys are the store's ``KeyValue`` records; leases are ``LeaseTimeToLive`` records, whose
``ttl`` is the seconds left when the lease was read (-1: expired).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from k8s_sql.store.model import KeyValue, LeaseTimeToLive


@dataclass(frozen=True, slots=True)
class SnapshotHeader:
    """Where a snapshot comes from and the revision its keys were read at.

    ``compact_revision`` is the source's last compaction (0: none or unknown); ``keys`` how
    many keys the source held at ``revision``; ``source`` names it, without passwords.
    """

    revision: int
    compact_revision: int
    keys: int
    source: str


@dataclass(frozen=True, slots=True)
class Batch:
    """The next part of a snapshot: leases, and keys continuing the previous batch's in
    ascending order.  Every lease a key uses comes in its batch or an earlier one, unless
    the lease was gone from the source when its leases were read."""

    leases: tuple[LeaseTimeToLive, ...] = ()
    kvs: tuple[KeyValue, ...] = ()

    @property
    def size(self) -> int:
        """The bytes of the batch's keys and values."""
        return sum(len(kv.key) + len(kv.value) for kv in self.kvs)


class Pager:
    """Page sizes for reading keys: pages of about ``target_bytes``, whatever the values' size.

    Ranges are limited by key count, so the count is adjusted after each page from the
    average size of the keys it returned, between 1 and ``most``.
    """

    def __init__(self, first: int = 100, most: int = 10_000, target_bytes: int = 4 * 1024 * 1024) -> None:
        #: How many keys to ask for next.
        self.limit = first
        self._most = most
        self._target = target_bytes

    def measured(self, kvs: Sequence[KeyValue]) -> None:
        """Size the next page from the keys of the last one."""
        if kvs:
            average = sum(len(kv.key) + len(kv.value) for kv in kvs) / len(kvs)
            self.limit = max(1, min(self._most, int(self._target / max(average, 1.0))))


def next_key(key: bytes) -> bytes:
    """The smallest key after ``key``: where the next page starts."""
    return key + b"\0"
