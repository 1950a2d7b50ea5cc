"""Copying a snapshot from a source to a sink, a batch at a time.

Memory stays bounded by a couple of batches: the next batch is read while the last is
written.  A key whose lease was gone from the source by the time its leases were read
(expired or revoked after the snapshot's revision) gets that lease back as already
expired, so the target deletes the key at its first lease sweep, as the source did.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

from k8s_sql.migrate.interfaces import ISnapshotSink, ISnapshotSource
from k8s_sql.migrate.progress import Progress
from k8s_sql.migrate.snapshot import Batch, SnapshotHeader
from k8s_sql.store.model import LeaseTimeToLive

#: The TTL of a lease that is gone from the source: expired.
EXPIRED = -1


async def copy_snapshot(
    source: ISnapshotSource, sink: ISnapshotSink, progress: Progress, revision: int = 0
) -> SnapshotHeader:
    """Copy ``source``'s snapshot at ``revision`` (0: its current one) into ``sink``; its header."""
    header = await source.open(revision)
    await sink.begin(header)
    progress.start(header.keys)
    known: set[int] = set()
    pending: Deferred[Batch | None] = Deferred.fromCoroutine(source.read())
    try:
        while (batch := await pending) is not None:
            pending = Deferred.fromCoroutine(source.read())
            batch = _with_missing_leases(batch, known)
            await sink.add(batch)
            progress.advance(len(batch.kvs), len(batch.leases), batch.size)
    except BaseException:
        pending.addErrback(lambda _: None)
        pending.cancel()
        raise
    finally:
        progress.stop()
    await sink.finish()
    return header


def _with_missing_leases(batch: Batch, known: set[int]) -> Batch:
    """``batch`` with an expired lease for each lease its keys use that no batch brought."""
    known.update(lease.id for lease in batch.leases)
    missing = sorted({kv.lease for kv in batch.kvs if kv.lease and kv.lease not in known})
    if not missing:
        return batch
    known.update(missing)
    return Batch(batch.leases + tuple(LeaseTimeToLive(lease, EXPIRED, 0) for lease in missing), batch.kvs)
