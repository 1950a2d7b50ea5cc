"""Lease rows: grant, renew, revoke and expiry, each inside one database transaction.

Deadlines are absolute times on the callers' clock, so a restart never shortens a lease.
Granting and revoking hold the revision counter's lock, which orders them with the puts
that attach keys; a revoke deletes the lease's keys in key order, in one revision.
"""

from __future__ import annotations

import random

from k8s_sql.store.errors import LeaseExists, LeaseNotFound
from k8s_sql.store.model import Lease, LeaseTimeToLive
from k8s_sql.store.reads import SELECT_KV
from k8s_sql.store.session import Session
from k8s_sql.store.writes import Executor

#: etcd's largest lease TTL, in seconds.
MAX_LEASE_TTL = 9_000_000_000

_LEASED = SELECT_KV.format(value="", where="lease = ?")


def grant(executor: Executor, lease_id: int, ttl: int, now: float, rng: random.Random) -> Lease:
    """Create a lease; ``lease_id`` 0 picks a random positive ID not in use."""
    reader = executor.reader
    if lease_id == 0:
        lease_id = rng.randrange(1, 2**63)
        while reader.lease_exists(lease_id):
            lease_id = rng.randrange(1, 2**63)
    elif reader.lease_exists(lease_id):
        raise LeaseExists()
    lease = Lease(lease_id, ttl, now + ttl)
    executor.session.run(
        "INSERT INTO k8s_lease (id, ttl, deadline) VALUES (?, ?, ?)", lease.id, lease.granted_ttl, lease.deadline
    )
    return lease


def revoke(executor: Executor, lease_id: int) -> int:
    """Delete a lease and its keys; return the revision after."""
    if not executor.reader.lease_exists(lease_id):
        raise LeaseNotFound()
    executor.delete_rows(executor.session.all(_LEASED, lease_id), "DELETE FROM k8s_kv WHERE lease = ?", lease_id)
    executor.session.run("DELETE FROM k8s_lease WHERE id = ?", lease_id)
    return executor.revision


def expire(executor: Executor, lease_id: int, now: float) -> bool:
    """Revoke the lease if it is still there and expired at ``now``; whether it was."""
    # Locking the row waits for a renewal in progress and then sees its new deadline.
    expired_now = "SELECT 1 FROM k8s_lease WHERE id = ? AND deadline < ?" + executor.session.dialect.lock_suffix
    if executor.session.one(expired_now, lease_id, now) is None:
        return False
    revoke(executor, lease_id)
    return True


def expired(session: Session, now: float, limit: int) -> list[int]:
    """Up to ``limit`` leases whose deadline is before ``now``, soonest first."""
    rows = session.all("SELECT id FROM k8s_lease WHERE deadline < ? ORDER BY deadline, id LIMIT ?", now, limit)
    return [row[0] for row in rows]


def renew(session: Session, lease_id: int, now: float) -> int:
    """Move an unexpired lease's deadline to ``now`` plus its TTL; return the TTL, or 0."""
    row = session.one("SELECT ttl, deadline FROM k8s_lease WHERE id = ?" + session.dialect.lock_suffix, lease_id)
    if row is None or row[1] < now:
        return 0
    session.run("UPDATE k8s_lease SET deadline = ? WHERE id = ?", now + row[0], lease_id)
    return row[0]


def time_to_live(session: Session, lease_id: int, keys: bool, now: float) -> LeaseTimeToLive:
    """A lease's remaining seconds, truncated as etcd does; -1 when unknown or expired."""
    row = session.one("SELECT ttl, deadline FROM k8s_lease WHERE id = ?", lease_id)
    if row is None or row[1] < now:
        return LeaseTimeToLive(lease_id, -1)
    attached = (
        tuple(r[0] for r in session.all("SELECT k FROM k8s_kv WHERE lease = ? ORDER BY k", lease_id)) if keys else ()
    )
    return LeaseTimeToLive(lease_id, int(row[1] - now), row[0], attached)


def all_ids(session: Session) -> list[int]:
    """The IDs of every lease."""
    return [row[0] for row in session.all("SELECT id FROM k8s_lease ORDER BY id")]
