"""Maintenance.Snapshot over a real store on every backend: what it streams, and the file it is.

The handler is called directly with a call that records what it sends; the file the
messages make is read back with k8s-sql's own bbolt reader and compared with the etcd
records the store's history must give, written out by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import pytest
from twisted.internet import defer

from k8s_sql.etcd.header import Identity
from k8s_sql.etcd.maintenance import MaintenanceService
from k8s_sql.etcd.snapshot import CHUNK
from k8s_sql.proto import kv_pb2, lease_pb2, rpc_pb2
from k8s_sql.snapshot.layout import Member, SnapshotAbandoned, revision_key, write_snapshot
from k8s_sql.snapshot.reader import BoltReader, Bucket
from k8s_sql.store.model import AlarmType, DeleteRangeRequest, PutRequest, TxnRequest

IDENTITY = Identity(cluster_id=11, member_id=22)


class RecordingCall:
    """A server-streaming call recording the messages sent; with ``hold``, each send waits
    for ``release``, as a call whose client window is full."""

    def __init__(self, hold: bool = False) -> None:
        self.messages: list[rpc_pb2.SnapshotResponse] = []
        self.hold = hold
        self._pending: defer.Deferred[None] | None = None
        self._waiting: list[tuple[int, defer.Deferred[None]]] = []

    def send(self, message: rpc_pb2.SnapshotResponse) -> defer.Deferred[None]:
        self.messages.append(message)
        ready = [(count, waiter) for count, waiter in self._waiting if len(self.messages) >= count]
        self._waiting = [item for item in self._waiting if item not in ready]
        for _, waiter in ready:
            waiter.callback(None)
        if not self.hold:
            return defer.succeed(None)
        self._pending = defer.Deferred()
        return self._pending

    def sent(self, count: int) -> defer.Deferred[None]:
        """Fires once ``count`` messages were sent."""
        if len(self.messages) >= count:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._waiting.append((count, waiter))
        return waiter

    def release(self, hold: bool) -> None:
        """Let the waiting send through; keep holding the next ones if ``hold``."""
        self.hold = hold
        pending, self._pending = self._pending, None
        assert pending is not None
        pending.callback(None)


@pytest.fixture
def maintenance(store: Any, reactor: Any) -> MaintenanceService:
    return MaintenanceService(store, IDENTITY, "3.6.4", reactor)


def entries(reader: BoltReader, bucket: Bucket) -> dict[bytes, Any]:
    """A bucket's entries, nested buckets as dicts."""
    return {
        key: entries(reader, value) if isinstance(value, Bucket) else value for key, value in reader.entries(bucket)
    }


def test_the_stream_is_etcds_snapshot_file_then_its_sha256(
    run: Callable[..., Any], store: Any, reactor: Any, maintenance: MaintenanceService, tmp_path: Path
) -> None:
    run(store.put, PutRequest(b"k", b"1"))  # 2
    run(store.put, PutRequest(b"k", b"2"))  # 3
    run(store.put, PutRequest(b"gone", b"x"))  # 4
    run(store.delete_range, DeleteRangeRequest(b"gone"))  # 5
    run(store.compact, 5, True)
    run(store.txn, TxnRequest((), (PutRequest(b"p", b""), PutRequest(b"q", b"9" * 50_000))))  # 6
    run(store.delete_range, DeleteRangeRequest(b"p"))  # 7
    granted = run(store.lease_grant, 7, 100, reactor.seconds())
    run(store.put, PutRequest(b"leased", b"v", lease=granted.id))  # 8
    run(store.activate_alarm, 22, AlarmType.NOSPACE)
    call = RecordingCall()
    run(maintenance.snapshot, rpc_pb2.SnapshotRequest(), call)

    *chunks, last = call.messages
    data = b"".join(message.blob for message in chunks)
    assert all(0 < len(message.blob) <= CHUNK for message in chunks)
    assert [message.remaining_bytes for message in chunks] == [
        len(data) - sum(len(message.blob) for message in chunks[: index + 1]) for index in range(len(chunks))
    ]
    assert (last.remaining_bytes, last.blob) == (0, hashlib.sha256(data).digest())
    assert len(data) % 4096 == 0 and len(chunks) > 1

    path = tmp_path / "snapshot.db"
    path.write_bytes(data + last.blob)
    with open(path, "rb") as file:
        reader = BoltReader(file, len(data))
        buckets = entries(reader, reader.root())
    kv = kv_pb2.KeyValue
    assert buckets[b"key"] == {
        revision_key(3): kv(key=b"k", create_revision=2, mod_revision=3, version=2, value=b"2").SerializeToString(),
        revision_key(6, 0): kv(key=b"p", create_revision=6, mod_revision=6, version=1).SerializeToString(),
        revision_key(6, 1): kv(
            key=b"q", create_revision=6, mod_revision=6, version=1, value=b"9" * 50_000
        ).SerializeToString(),
        revision_key(7, 0, tombstone=True): kv(key=b"p").SerializeToString(),
        revision_key(8): kv(
            key=b"leased", create_revision=8, mod_revision=8, version=1, value=b"v", lease=7
        ).SerializeToString(),
    }
    lease = lease_pb2.Lease.FromString(buckets[b"lease"][(7).to_bytes(8, "big")])
    assert (lease.ID, lease.TTL) == (7, 100) and 90 <= lease.RemainingTTL <= 100
    assert buckets[b"meta"] == {
        b"confState": b'{"voters":[22],"auto_leave":false}',
        b"consistent_index": (8).to_bytes(8, "big"),
        b"finishedCompactRev": revision_key(5),
        b"scheduledCompactRev": revision_key(5),
        b"term": (1).to_bytes(8, "big"),
    }
    assert buckets[b"alarm"] == {rpc_pb2.AlarmMember(memberID=22, alarm=rpc_pb2.NOSPACE).SerializeToString(): b""}
    assert buckets[b"members"] == {b"16": json.dumps({"id": 22, "peerURLs": []}, separators=(",", ":")).encode()}
    assert buckets[b"cluster"] == {b"clusterVersion": b"3.5.0"}
    assert buckets[b"auth"] == {b"authRevision": (1).to_bytes(8, "big")}
    assert buckets[b"authUsers"] == buckets[b"authRoles"] == buckets[b"members_removed"] == {}


def test_each_message_waits_for_room_in_the_client_window(
    run: Callable[..., Any], store: Any, maintenance: MaintenanceService
) -> None:
    run(store.txn, TxnRequest((), tuple(PutRequest(b"k%03d" % n, os.urandom(1024)) for n in range(100))))
    call = RecordingCall(hold=True)
    handler: list[defer.Deferred[None]] = []
    run(lambda: handler.append(defer.ensureDeferred(maintenance.snapshot(rpc_pb2.SnapshotRequest(), call))))
    run(call.sent, 1)
    assert len(call.messages) == 1
    run(call.release, True)
    run(call.sent, 2)
    assert len(call.messages) == 2
    run(call.release, False)
    run(lambda: handler[0])
    *chunks, last = call.messages
    assert last.blob == hashlib.sha256(b"".join(message.blob for message in chunks)).digest()
    assert len(chunks) > 3


def test_an_empty_store_makes_a_snapshot_of_revision_1(
    run: Callable[..., Any], maintenance: MaintenanceService, tmp_path: Path
) -> None:
    call = RecordingCall()
    run(maintenance.snapshot, rpc_pb2.SnapshotRequest(), call)
    data = b"".join(message.blob for message in call.messages[:-1])
    path = tmp_path / "snapshot.db"
    path.write_bytes(data)
    with open(path, "rb") as file:
        reader = BoltReader(file, len(data))
        buckets = entries(reader, reader.root())
    assert buckets[b"key"] == {} and buckets[b"lease"] == {} and buckets[b"alarm"] == {}
    assert buckets[b"meta"][b"consistent_index"] == (1).to_bytes(8, "big")


def test_writing_stops_once_nobody_waits_for_the_snapshot(run: Callable[..., Any], store: Any, tmp_path: Path) -> None:
    run(store.put, PutRequest(b"k", b"v"))
    with open(tmp_path / "snapshot.db", "wb+") as file, pytest.raises(SnapshotAbandoned):
        run(store.snapshot, lambda history: write_snapshot(file, history, Member(22, 1), 0.0, lambda: True))
