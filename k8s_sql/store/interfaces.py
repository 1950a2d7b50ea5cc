"""The roles of the storage layer.

``IStore`` is everything above the database needs: etcd's KV semantics, the change feed the
watch follower tails, and lease rows.  Every method returns a ``Deferred``; failures are the
exceptions of ``k8s_sql.store.errors``.  The etcd services depend on this interface only,
never on a dialect.
"""

from __future__ import annotations

from typing import Callable

from zope.interface import Attribute, Interface


class ILeaseStore(Interface):
    """The lease rows, and the revision lease responses report.

    The part of ``IStore`` the lease service and its sweeper use.  ``now`` is in seconds on
    the caller's clock; deadlines are stored as absolute times, so a restart never expires
    a lease early.
    """

    def current_revision():
        """Fire with the newest committed revision."""

    def lease_grant(lease_id, ttl, now):
        """Create a lease (``lease_id`` 0: pick a random positive one); fires with a ``Lease``."""

    def lease_revoke(lease_id):
        """Delete a lease and its keys in one revision; fires with the current revision."""

    def lease_renew(lease_id, now):
        """Restart a lease's TTL from ``now``; fires with its TTL, or 0 when it does not exist."""

    def lease_time_to_live(lease_id, keys, now):
        """Fire with a ``LeaseTimeToLive`` (``ttl`` -1 when the lease does not exist)."""

    def leases():
        """Fire with the IDs of all leases."""

    def expire_leases(now, limit):
        """Revoke up to ``limit`` leases whose deadline is before ``now``; fires with their IDs.

        Each expired lease is revoked exactly once, even when several servers sweep at once.
        """


class IChangeLog(Interface):
    """The committed changes, in revision order: what the watch follower and watch streams read.

    The part of ``IStore`` the watch machinery depends on.
    """

    def current_revision():
        """Fire with the newest committed revision."""

    def compact_revision():
        """Fire with the revision of the last compaction (0 when never compacted)."""

    def changes(after, limit):
        """Fire with the events of revisions above ``after``, in revision order.

        Returns whole revisions only: it stops after about ``limit`` events but never splits a
        revision.  Each event carries ``prev_kv``.  Fails with ``Compacted`` when events
        after ``after`` have been compacted away.
        """

    def notify_commits(observer: Callable[[int], None]):
        """Call ``observer(revision)`` in the reactor thread when a commit took ``revision``.

        Local commits are always reported at once.  Commits by other servers sharing the
        database are reported only where the database can push them (PostgreSQL
        LISTEN/NOTIFY); elsewhere the watch follower finds them by polling ``changes``.
        """


class IStore(ILeaseStore, IChangeLog):
    """A revision log with etcd's semantics, kept in one SQL database.

    Revisions start at 1 (a fresh store reports 1) and are never reused.  A write that
    changes anything takes exactly the next revision; commits become visible in revision
    order, whichever server of those sharing the database made them.
    """

    cluster_id = Attribute("This database's cluster ID: a positive 64-bit integer chosen when the schema was created.")

    def range(request):
        """Run a ``RangeRequest``; fires with a ``RangeResponse``."""

    def put(request):
        """Run a ``PutRequest``; fires with a ``PutResponse``."""

    def delete_range(request):
        """Run a ``DeleteRangeRequest``; fires with a ``DeleteRangeResponse``."""

    def txn(request):
        """Run a ``TxnRequest`` atomically; fires with a ``TxnResponse``."""

    def compact(revision, physical):
        """Forget history superseded at or before ``revision``; fires with the current revision.

        Fails with ``Compacted`` when ``revision`` is not above the last compaction and with
        ``FutureRevision`` when it is above the current revision.
        """

    def close():
        """Release the database connections; fires when done."""

