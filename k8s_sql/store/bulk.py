"""Loading a snapshot: live keys and leases written with the revisions they had elsewhere.

A migration copies another etcd's or k8s-sql's keys as of one revision R.  ``begin`` empties
the store and moves its revision counter to R (or keeps a higher one), recording it as the
compaction point: the store holds no history below it.  ``keys`` then writes each key's
latest version with its own create and mod revisions and version, as a log row (with no
previous version) and a live row, so reads, compares and watches see exactly what the
source held.  Keys arrive in ascending order, each above every key already loaded, so a
load never writes one twice.  Each function runs in one write transaction under the
revision counter's lock and takes no revision.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from k8s_sql.store.errors import InvalidLoad, LeaseExists, LeaseNotFound, LeaseTTLTooLarge, NotEmpty
from k8s_sql.store.leases import MAX_LEASE_TTL
from k8s_sql.store.model import KeyValue, Lease
from k8s_sql.store.schema import COMPACT_ROW, PHYSICAL_ROW
from k8s_sql.store.session import Session
from k8s_sql.store.writes import INSERT_KV, INSERT_LOG, Executor

#: Parameters per ``IN (...)`` list, well within every database's limit.
_IN_LIST = 500


def begin(executor: Executor, revision: int, replace: bool) -> int:
    """Empty the store for a snapshot taken at ``revision``; return the store's revision now.

    Fails with ``NotEmpty`` when the store holds keys or leases, unless ``replace``.
    """
    if revision < 1:
        raise InvalidLoad(f"a snapshot's revision is at least 1, not {revision}")
    session = executor.session
    if not replace and any(session.one(f"SELECT 1 FROM {table} LIMIT 1") for table in ("k8s_kv", "k8s_lease")):
        raise NotEmpty()
    for table in ("k8s_log", "k8s_kv", "k8s_lease"):
        session.run(f"DELETE FROM {table}")
    start = max(revision, executor.begin)
    session.run("UPDATE k8s_revision SET revision = ? WHERE id = 1", start)
    session.run("UPDATE k8s_meta SET value = ? WHERE name IN (?, ?)", start, COMPACT_ROW, PHYSICAL_ROW)
    executor.restart_at(start)
    return start


def leases(executor: Executor, loaded: Sequence[Lease]) -> None:
    """Add leases with their IDs, TTLs and deadlines; fails on an ID already in use."""
    for lease in loaded:
        if lease.id <= 0 or lease.granted_ttl < 0:
            raise InvalidLoad(f"lease {lease.id} with TTL {lease.granted_ttl} cannot be loaded")
        if lease.granted_ttl > MAX_LEASE_TTL:
            raise LeaseTTLTooLarge()
    ids = [lease.id for lease in loaded]
    if len(set(ids)) < len(ids) or _existing_leases(executor.session, ids):
        raise LeaseExists()
    executor.session.run_many(
        "INSERT INTO k8s_lease (id, ttl, deadline) VALUES (?, ?, ?)",
        [(lease.id, lease.granted_ttl, lease.deadline) for lease in loaded],
    )


def keys(executor: Executor, kvs: Sequence[KeyValue]) -> None:
    """Add live keys, in ascending order and above every key already loaded.

    Each keeps its create and mod revisions (at most the store's revision), version and
    lease, which must exist.
    """
    session = executor.session
    last = session.one("SELECT k FROM k8s_kv ORDER BY k DESC LIMIT 1")
    previous = last[0] if last else None
    for kv in kvs:
        if not kv.key or (previous is not None and kv.key <= previous):
            raise InvalidLoad(f"key {kv.key!r} is empty, out of order or loaded twice")
        if not 0 < kv.create_revision <= kv.mod_revision <= executor.begin or kv.version < 1:
            raise InvalidLoad(
                f"key {kv.key!r} has create revision {kv.create_revision}, mod revision {kv.mod_revision} and"
                f" version {kv.version}: a snapshot at revision {executor.begin} cannot hold that"
            )
        previous = kv.key
    leases = {kv.lease for kv in kvs if kv.lease}
    if len(_existing_leases(session, sorted(leases))) < len(leases):
        raise LeaseNotFound()
    revisions = sorted({kv.mod_revision for kv in kvs})
    next_sub = dict.fromkeys(revisions, 0)
    for chunk in _chunks(revisions):
        placeholders = ", ".join("?" * len(chunk))
        statement = f"SELECT revision, MAX(sub) FROM k8s_log WHERE revision IN ({placeholders}) GROUP BY revision"
        for revision, sub in session.all(statement, *chunk):
            next_sub[revision] = sub + 1
    log_rows, kv_rows = [], []
    for kv in kvs:
        sub = next_sub[kv.mod_revision]
        next_sub[kv.mod_revision] = sub + 1
        log_rows.append((kv.mod_revision, sub, kv.key, kv.create_revision, kv.version, kv.lease, kv.value, 0, 0, 0))
        kv_rows.append((kv.key, kv.create_revision, kv.mod_revision, sub, kv.version, kv.lease, kv.value))
    session.run_many(INSERT_LOG, log_rows)
    session.run_many(INSERT_KV, kv_rows)


def _existing_leases(session: Session, ids: Sequence[int]) -> set[int]:
    """Which of the lease IDs ``ids`` are in use."""
    found: set[int] = set()
    for chunk in _chunks(ids):
        placeholders = ", ".join("?" * len(chunk))
        found.update(row[0] for row in session.all(f"SELECT id FROM k8s_lease WHERE id IN ({placeholders})", *chunk))
    return found


def _chunks(values: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(values), _IN_LIST):
        yield values[start : start + _IN_LIST]
