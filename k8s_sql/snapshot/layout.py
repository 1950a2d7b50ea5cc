"""etcd 3.5's use of bbolt: the buckets of its database file and the records in them.

An etcd 3.5.1 snapshot holds these buckets (names in byte order, as bbolt keeps them):

- ``alarm``: one key per raised alarm, a marshalled ``AlarmMember``, with an empty value;
- ``auth``: ``authRevision`` (8-byte big-endian; 1 in an etcd that never used auth);
  ``authRoles``, ``authUsers``: users and roles, empty without auth;
- ``cluster``: ``clusterVersion`` (``3.5.0``);
- ``key``: every stored revision (``k8s_sql.store.history``): bucket key revision ``_``
  sub-revision (each 8-byte big-endian), ``t`` after a tombstone; value ``mvccpb.KeyValue``;
- ``lease``: 8-byte big-endian lease ID → ``leasepb.Lease{ID, TTL, RemainingTTL}``;
- ``members``: hexadecimal member ID → the member as JSON; ``members_removed``: empty;
- ``meta``: ``confState`` (JSON), ``consistent_index`` and ``term`` (8-byte big-endian),
  ``finishedCompactRev`` and ``scheduledCompactRev`` (a revision key, after a compaction).

``write_snapshot`` writes the store's ``History`` this way; ``EtcdSnapshot`` reads the
records back from a file etcd (or k8s-sql) wrote.  ``etcdutl snapshot restore`` rewrites the
membership and the consistent index of the file it restores, so those need only be plausible.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from google.protobuf.message import DecodeError

from k8s_sql.etcd.convert import kv_of
from k8s_sql.proto import kv_pb2, lease_pb2, rpc_pb2
from k8s_sql.snapshot import writer
from k8s_sql.snapshot.bbolt import SnapshotError
from k8s_sql.snapshot.reader import BoltReader, Bucket
from k8s_sql.store.history import History
from k8s_sql.store.model import Alarm, KeyValue, Lease

KEY = b"key"
META = b"meta"
LEASE = b"lease"

#: The storage format written: etcd 3.5's, which etcd 3.5 and 3.6 restore.
CLUSTER_VERSION = b"3.5.0"
#: The revision of the (unused) authentication data, as in an etcd that never used it.
AUTH_REVISION = 1

CONSISTENT_INDEX = b"consistent_index"
TERM = b"term"
CONF_STATE = b"confState"
FINISHED_COMPACT = b"finishedCompactRev"
SCHEDULED_COMPACT = b"scheduledCompactRev"

_BIG_ENDIAN = struct.Struct(">Q")
_REVISION = struct.Struct(">Q1sQ")


class SnapshotAbandoned(Exception):
    """Writing a snapshot stopped because nobody wants it any more."""


def revision_key(revision: int, sub: int = 0, tombstone: bool = False) -> bytes:
    """A ``key`` bucket key (and the form of the compaction revisions in ``meta``)."""
    return _REVISION.pack(revision, b"_", sub) + (b"t" if tombstone else b"")


def parse_revision_key(key: bytes) -> tuple[int, int, bool]:
    """(revision, sub-revision, tombstone) of a ``key`` bucket key."""
    if len(key) not in (_REVISION.size, _REVISION.size + 1) or key[8:9] != b"_" or key[17:] not in (b"", b"t"):
        raise SnapshotError(f"{key.hex()} is not an etcd revision: the file is damaged")
    revision, _, sub = _REVISION.unpack_from(key)
    return revision, sub, len(key) > _REVISION.size


@dataclass(frozen=True, slots=True)
class Member:
    """Who wrote the snapshot: the one member of its cluster, and its raft term."""

    id: int
    raft_term: int


def write_snapshot(
    file: BinaryIO, history: History, member: Member, now: float, abandoned: Callable[[], bool] = lambda: False
) -> int:
    """Write ``history`` to ``file`` as etcd 3.5's snapshot (without the sha256 trailer); its size.

    Leases keep the seconds they have left at ``now`` (on the store's clock) as their
    ``RemainingTTL``, which etcd restores.  ``abandoned`` is asked as the keys are written:
    when it says so, ``SnapshotAbandoned`` stops the work.
    """
    compaction = [revision_key(history.compacted)] if history.compacted > 0 else []
    meta = [
        (CONF_STATE, json.dumps({"voters": [member.id], "auto_leave": False}, separators=(",", ":")).encode()),
        (CONSISTENT_INDEX, _BIG_ENDIAN.pack(history.revision)),
        *((FINISHED_COMPACT, value) for value in compaction),
        *((SCHEDULED_COMPACT, value) for value in compaction),
        (TERM, _BIG_ENDIAN.pack(member.raft_term)),
    ]
    root = writer.Bucket(
        [
            (b"alarm", writer.Bucket(sorted((alarm_key(alarm), b"") for alarm in history.alarms()))),
            (b"auth", writer.Bucket([(b"authRevision", _BIG_ENDIAN.pack(AUTH_REVISION))])),
            (b"authRoles", writer.Bucket()),
            (b"authUsers", writer.Bucket()),
            (b"cluster", writer.Bucket([(b"clusterVersion", CLUSTER_VERSION)])),
            (KEY, writer.Bucket(_unless(abandoned, history.key_bucket()))),
            (LEASE, writer.Bucket(lease_entry(lease, now) for lease in history.leases())),
            (b"members", writer.Bucket([(f"{member.id:x}".encode(), member_record(member))])),
            (b"members_removed", writer.Bucket()),
            (META, writer.Bucket(meta)),
        ]
    )
    return writer.BoltWriter(file).write(root)


def _unless(abandoned: Callable[[], bool], entries: Iterator[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
    for entry in entries:
        if abandoned():
            raise SnapshotAbandoned()
        yield entry


def alarm_key(alarm: Alarm) -> bytes:
    """An ``alarm`` bucket key: the marshalled ``AlarmMember``."""
    return rpc_pb2.AlarmMember(memberID=alarm.member_id, alarm=alarm.alarm.name).SerializeToString()


def lease_entry(lease: Lease, now: float) -> tuple[bytes, bytes]:
    """A ``lease`` bucket entry; its remaining TTL is at least 1 s, as 0 would mean all of it."""
    remaining = max(1, math.ceil(lease.deadline - now))
    record = lease_pb2.Lease(ID=lease.id, TTL=lease.granted_ttl, RemainingTTL=min(remaining, lease.granted_ttl))
    return _BIG_ENDIAN.pack(lease.id), record.SerializeToString()


def member_record(member: Member) -> bytes:
    """A ``members`` bucket value: the member as etcd marshals it (no peer URLs: no raft peers)."""
    return json.dumps({"id": member.id, "peerURLs": []}, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Record:
    """One stored revision of an etcd snapshot: a key's version, or its deletion (``tombstone``)."""

    revision: int
    sub: int
    tombstone: bool
    kv: KeyValue


class EtcdSnapshot:
    """The etcd records in the bbolt database ``reader`` reads.

    ``compacted`` is the compaction revision (0: never compacted): the later of the finished
    and the scheduled one, since etcd completes a scheduled compaction when it starts.
    """

    def __init__(self, reader: BoltReader) -> None:
        self._reader = reader
        root = reader.root()
        key = reader.bucket(root, KEY)
        meta = reader.bucket(root, META)
        if key is None or meta is None:
            raise SnapshotError("the bbolt database has no 'key' or 'meta' bucket: it is not an etcd snapshot")
        self._key = key
        self._lease = reader.bucket(root, LEASE)
        values = {name: value for name, value in reader.entries(meta) if isinstance(value, bytes)}
        self.compacted = max(
            (parse_revision_key(values[name])[0] for name in (FINISHED_COMPACT, SCHEDULED_COMPACT) if name in values),
            default=0,
        )

    def records(self) -> Iterator[Record]:
        """Every stored revision, in order, checked against its bucket key."""
        for bucket_key, value in self._reader.entries(self._key):
            if isinstance(value, Bucket):
                raise SnapshotError("the 'key' bucket holds a bucket: it is not an etcd snapshot")
            revision, sub, tombstone = parse_revision_key(bucket_key)
            where = f"the record of revision {revision}"
            try:
                message = kv_pb2.KeyValue.FromString(value)
            except DecodeError:
                raise SnapshotError(f"{where} cannot be decoded: the file is damaged") from None
            if not message.key or not (tombstone or message.mod_revision == revision):
                raise SnapshotError(f"{where} does not match its bucket key: the file is damaged")
            yield Record(revision, sub, tombstone, kv_of(message))

    def leases(self) -> Iterator[lease_pb2.Lease]:
        """Every lease, by ID."""
        if self._lease is None:
            return
        for _, value in self._reader.entries(self._lease):
            if isinstance(value, Bucket):
                raise SnapshotError("the 'lease' bucket holds a bucket: it is not an etcd snapshot")
            try:
                yield lease_pb2.Lease.FromString(value)
            except DecodeError:
                raise SnapshotError("a lease record cannot be decoded: the file is damaged") from None
