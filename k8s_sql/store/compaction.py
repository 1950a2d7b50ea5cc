"""Compaction: forgetting history, first logically, then physically in bounded batches.

``compact(N)`` records N as the compaction point, under the revision counter's lock, so no
write that read the old point is still running.  Reads below N fail from then on, and the
log rows nothing can read any more are deleted afterwards, a window of revisions at a time,
each window in its own short transaction: a row is deleted when a later change of its key
at or below N supersedes it, and tombstones below N go too, as in etcd.  A tombstone at N
itself stays (until the next compaction), so that a watch from N still gets that delete
(etcd fixed the same loss in 3.5.15, etcd-io/etcd#18089).  Each key's latest version at or
below N stays, and with it every ``prev_kv`` of the events after N.
Progress is recorded with each window, so an interrupted compaction resumes on next start.
"""

from __future__ import annotations

from k8s_sql.store.errors import FutureRevision
from k8s_sql.store.schema import COMPACT_ROW, PHYSICAL_ROW
from k8s_sql.store.session import Session
from k8s_sql.store.writes import Executor

#: How many revisions of the log one physical compaction step examines.
DEFAULT_BATCH = 1000


def compact(executor: Executor, revision: int) -> int:
    """Record ``revision`` as the compaction point; return the current revision.

    Fails with ``Compacted`` when ``revision`` is not above the last compaction and with
    ``FutureRevision`` when it is above the current revision.
    """
    if revision <= executor.reader.compacted:
        raise executor.reader.compacted_error()
    if revision > executor.begin:
        raise FutureRevision()
    executor.session.run("UPDATE k8s_meta SET value = ? WHERE name = ?", revision, COMPACT_ROW)
    executor.reader.compacted = revision
    return executor.begin


def step(session: Session, batch: int) -> bool:
    """Delete the rows compaction frees in the next window of revisions; whether more remain."""
    done = session.row("SELECT value FROM k8s_meta WHERE name = ?" + session.dialect.lock_suffix, PHYSICAL_ROW)[0]
    target = session.row("SELECT value FROM k8s_meta WHERE name = ?", COMPACT_ROW)[0]
    if done >= target:
        return False
    upto = min(target, max(done, 0) + batch)
    # From the last window's end itself: a tombstone at the last compaction point goes now.
    rows = session.all(
        "SELECT revision, sub, k, deleted, prev_revision, prev_sub FROM k8s_log"
        " WHERE revision >= ? AND revision <= ? ORDER BY revision, sub",
        max(done, 0),
        upto,
    )
    doomed: set[tuple[int, int]] = set()
    latest: dict[tuple[bytes, int], int] = {}
    for revision, sub, key, deleted, prev_revision, prev_sub in rows:
        if deleted and revision < target:
            doomed.add((revision, sub))
        if prev_revision:
            doomed.add((prev_revision, prev_sub))
        if (key, revision) in latest:
            doomed.add((revision, latest[key, revision]))
        latest[key, revision] = sub
    session.run_many("DELETE FROM k8s_log WHERE revision = ? AND sub = ?", sorted(doomed))
    session.run("UPDATE k8s_meta SET value = ? WHERE name = ?", upto, PHYSICAL_ROW)
    return upto < target
