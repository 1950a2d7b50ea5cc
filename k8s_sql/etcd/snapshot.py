"""Maintenance.Snapshot: the store as etcd's snapshot file, streamed as etcd streams its own.

The store's history is written as an etcd 3.5 bbolt file (``k8s_sql.snapshot.layout``) to an
unnamed temporary file, on a reader thread inside one read transaction of its own
(``IMaintenanceStore.snapshot``), so it is one consistent revision.  The file is then sent
in messages of 32 KiB (etcd's ``snapshotSendBufferSize``), each with the bytes remaining
after it, then one last message with the sha256 of everything sent, as etcd 3.5 does:
``etcdctl snapshot save`` appends it to the file and ``etcdutl snapshot restore`` checks it.
The file is read a MiB at a time in the reactor's thread pool and each message waits for
room in the client's flow-control window, so memory stays bounded whatever the store's
size; the temporary file (in ``$TMPDIR``) takes the snapshot's size on disk meanwhile.
"""

from __future__ import annotations

import functools
import hashlib
import tempfile
import threading
from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar

from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from k8s_sql.etcd.header import Identity
from k8s_sql.grpc.interfaces import IServerCall
from k8s_sql.proto import rpc_pb2
from k8s_sql.snapshot.layout import Member, write_snapshot
from k8s_sql.store.history import History
from k8s_sql.store.interfaces import IMaintenanceStore

T = TypeVar("T")

#: The bytes of the file each message carries, as etcd sends them.
CHUNK = 32 * 1024
#: The bytes of the file read at a time.
READ_SIZE = 1024 * 1024


def _write(member: Member, now: float, abandoned: Callable[[], bool], history: History) -> tuple[BinaryIO, int, int]:
    """Write ``history`` to a new temporary file (in the store's read thread): the file, open
    at its start, its size and the revision it holds."""
    file = tempfile.TemporaryFile(prefix="k8s-sql-snapshot-")  # noqa: SIM115 (closed by the caller, or below)
    try:
        size = write_snapshot(file, history, member, now, abandoned)
        file.seek(0)
    except BaseException:
        file.close()
        raise
    return file, size, history.revision


class SnapshotSender:
    """Streams snapshots of ``store`` to Maintenance.Snapshot calls.

    @param identity: the member written into the snapshot.
    @param reactor: its clock gives the leases' remaining time (the clock lease deadlines
        are kept on) and its thread pool reads the file.
    """

    log = Logger()

    def __init__(self, store: IMaintenanceStore, identity: Identity, reactor: Any) -> None:
        self.store = store
        self.identity = identity
        self.reactor = reactor

    async def send(self, call: IServerCall) -> None:
        """Write a snapshot and stream it to ``call``, then its sha256."""
        abandoned = threading.Event()
        member = Member(self.identity.member_id, self.identity.raft_term)
        write = functools.partial(_write, member, self.reactor.seconds(), abandoned.is_set)
        try:
            file, size, revision = await self.store.snapshot(write)
        finally:
            abandoned.set()
        try:
            self.log.info("sending a snapshot at revision {revision}: {size} bytes", revision=revision, size=size)
            digest = hashlib.sha256()
            sent = 0
            while sent < size:
                data = await self._blocking(file.read, min(READ_SIZE, size - sent))
                if not data:
                    raise OSError(f"the snapshot file ended after {sent} of its {size} bytes")
                for start in range(0, len(data), CHUNK):
                    chunk = data[start : start + CHUNK]
                    sent += len(chunk)
                    digest.update(chunk)
                    await call.send(rpc_pb2.SnapshotResponse(remaining_bytes=size - sent, blob=chunk))
            await call.send(rpc_pb2.SnapshotResponse(remaining_bytes=0, blob=digest.digest()))
            self.log.info("sent a snapshot at revision {revision}: {size} bytes", revision=revision, size=size)
        finally:
            await self._blocking(file.close)

    async def _blocking(self, function: Callable[..., T], *args: Any) -> T:
        return await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), function, *args)
