"""The roles of the storage layer.

``IStore`` is everything above the database needs: etcd's KV semantics, the change feed the
watch follower tails, and lease rows.  Every method returns a ``Deferred``; failures are the
exceptions of ``k8s_sql.store.errors``.  The etcd services depend on this interface only,
never on a dialect.  ``IDialect`` is what differs between the databases the store runs on.
"""

from __future__ import annotations

from collections.abc import Callable

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

    def changes(after, limit, from_compaction=False):
        """Fire with the events of revisions above ``after``, in revision order.

        Returns whole revisions only: it stops once it has ``limit`` events or more, but never
        splits a revision.  Each non-create event carries ``prev_kv``, the key as of the
        revision before, as etcd's watch reports it.  The events after ``after`` are all
        available exactly when ``after`` is at or above the compaction revision; below it,
        fails with ``Compacted`` (carrying the compaction revision).  With
        ``from_compaction``, ``after`` may also be one below the compaction revision, as for
        etcd's watches: the compaction revision then brings what etcd keeps of it, its puts
        without ``prev_kv`` and none of its deletions.
        """

    def notify_commits(observer: Callable[[int | None], None]):
        """Call ``observer(revision)`` in the reactor thread when a commit took ``revision``.

        Local commits are always reported at once.  Commits by other servers sharing the
        database are reported where the database can push them (PostgreSQL LISTEN/NOTIFY)
        or the servers signal them to each other (``k8s_sql.cluster.peers``), and otherwise
        by ``observer(None)`` every poll interval: something may be new (see
        ``k8s_sql.store.signals``).  When it is called, every revision up to ``revision``
        is committed; calls may come out of order and more than once.  Returns a function
        that unregisters ``observer``.
        """


class IMaintenanceStore(Interface):
    """What etcd's Maintenance service asks of the database: hashes, snapshots, size, reclaim, alarms.

    The part of ``IStore`` the Maintenance service uses.  Alarms are rows of the database,
    so every server sharing it reports the same ones.
    """

    def hash_kv(revision):
        """Fire with a ``KVHash`` of the key space as of ``revision`` (0: the current one).

        The hash is etcd's: CRC-32C over its storage encoding of every revision kept at
        ``revision``, so equal histories hash equal, on any server and in etcd.  Fails with
        ``Compacted`` below the last compaction and ``FutureRevision`` above the current
        revision.
        """

    def snapshot(write):
        """Run ``write(history)`` on a pool thread; fires with what it returns.

        ``history`` is a ``k8s_sql.store.history.History``: the current revision, the
        compaction revision, etcd's ``key`` bucket (every revision kept, as ``hash_kv``
        reads them), the leases and the alarms, all from one read-only transaction, open
        while ``write`` runs.  ``write`` may block (it writes etcd's snapshot file) and
        may be run again from the start if the database asks for a retry.  The
        transaction is shared with no other read, so a long ``write`` holds up none.
        """

    def database_size():
        """Fire with the ``DatabaseSize`` of the store's tables."""

    def defragment():
        """Have the database reclaim the space of deleted rows; fires when it has."""

    def alarms():
        """Fire with every raised ``Alarm``, by type, then member."""

    def activate_alarm(member_id, alarm):
        """Raise an alarm (idempotent); fires with the ``Alarm``."""

    def deactivate_alarm(member_id, alarm):
        """Clear an alarm; fires with the ``Alarm`` cleared, or ``None`` when it was not raised."""


class IClusterStore(Interface):
    """What the servers sharing the database keep of each other: the member registry, the
    secret of their commit signals, and this store's own commits to pass on to them.

    The part of ``IStore`` the cluster stages use (``k8s_sql.cluster``).  ``now`` and
    deadlines are seconds on the callers' clocks, which servers sharing a database keep in
    step (as for leases).
    """

    peer_secret = Attribute("The random secret, read from the database once open, that authenticates commit signals.")

    def register_member(record, now, replace=()):
        """Add the ``MemberRecord`` of this process, deleting first the rows of the instances
        in ``replace``; fires with the live members (``record`` among them).

        Fails with ``NameInUse`` when live processes of another server hold the name.
        """

    def renew_member(record, now, forget_before):
        """Move the deadline of ``record``'s row to ``record.deadline`` (adding the row again
        if it was gone) and delete rows expired before ``forget_before``; fires with the live
        members and whether the row had been gone."""

    def deregister_member(instance):
        """Delete the row of ``instance``; fires when done."""

    def live_members(now):
        """Fire with the ``MemberRecord`` of every process whose deadline is not before ``now``."""

    def notify_local_commits(observer: Callable[[int], None]):
        """Call ``observer(revision)`` in the reactor thread after each commit of this store's
        own, and for no other; returns a function that unregisters it."""


class IStore(ILeaseStore, IChangeLog, IMaintenanceStore, IClusterStore):
    """A revision log with etcd's semantics, kept in one SQL database.

    Revisions start at 1 (a fresh store reports 1) and are never reused.  A write that
    changes anything takes exactly the next revision; commits become visible in revision
    order, whichever server of those sharing the database made them.

    Requests are checked as etcd checks them (``k8s_sql.store.checks``), except their size:
    etcd measures the serialized request, so the etcd layer refuses one over its limit
    before calling the store.  The store refuses only a key longer than its database can
    index (``RequestTooLarge``).
    """

    cluster_id = Attribute("This database's cluster ID: a positive 64-bit integer chosen when the schema was created.")

    def range(request):
        """Run a ``RangeRequest``; fires with a ``RangeResponse``."""

    def put(request):
        """Run a ``PutRequest``; fires with a ``PutResponse``."""

    def delete_range(request):
        """Run a ``DeleteRangeRequest``; fires with a ``DeleteRangeResponse``."""

    def txn(request):
        """Run a ``TxnRequest`` atomically; fires with a ``TxnResponse``.

        Inner responses carry the revisions etcd reports (a nested ``TxnResponse`` 0).
        """

    def compact(revision, physical):
        """Forget history superseded at or before ``revision``; fires with the current revision.

        Fails with ``Compacted`` when ``revision`` is not above the last compaction and with
        ``FutureRevision`` when it is above the current revision.
        """

    def close():
        """Release the database connections; fires when done."""


class IBulkLoad(Interface):
    """Loading a snapshot of another etcd or k8s-sql, keeping its revisions (for migrations).

    ``begin_load`` once, then ``load_leases`` and ``load_keys`` in batches; leases before
    the keys attached to them.  A load is meant for a database no server is serving yet:
    until it ends, readers see part of the snapshot.  Nothing loaded takes a revision.
    """

    def begin_load(revision, replace):
        """Empty the store for a snapshot taken at ``revision``; fires with the store's revision.

        The revision becomes the higher of ``revision`` and the store's own, and is recorded
        as compacted, since no history below it is loaded.  Fails with ``NotEmpty`` when the
        store holds keys or leases, unless ``replace``, which deletes them.
        """

    def load_leases(leases):
        """Add ``Lease`` records as they are (IDs, TTLs, deadlines); ``LeaseExists`` on an ID in use."""

    def load_keys(kvs):
        """Add live ``KeyValue`` records with their revisions, versions and leases.

        Keys come in ascending order, each above every key loaded before; revisions are at
        most the store's.  Fails with ``InvalidLoad`` otherwise, ``LeaseNotFound`` for a lease
        not loaded and ``RequestTooLarge`` for a key this database cannot hold.
        """


class IDialect(Interface):
    """How the store talks to one kind of database: connections, DDL, locks and failures.

    Statements are written once, with ``?`` placeholders, in the SQL the three databases
    share; a dialect adapts their spelling and supplies what cannot be shared.
    """

    name = Attribute("The URL scheme this dialect serves: 'sqlite', 'mysql' or 'postgres'.")
    max_key_bytes = Attribute("The longest key the schema can store, in bytes.")
    lock_suffix = Attribute(
        "What makes a SELECT lock the rows it reads until commit ('' where writes are serialized anyway)."
    )
    tables_statement = Attribute("A query listing the names of the tables in the store's database or schema.")
    default_readers = Attribute("The default size of the reader pool (the URL option ``readers``).")

    def sql(statement):
        """``statement`` with its ``?`` placeholders in the driver's parameter style (cached)."""

    def schema(tables):
        """The DDL statements creating ``tables`` (default: every table) and their indexes, in order."""

    def connection_pool(reactor, writer, size):
        """A started-on-run ``adbapi.ConnectionPool`` of ``size`` connections for writing or reading."""

    def transaction(cursor, writer):
        """A context manager around the statements of one transaction on ``cursor``.

        On entering, it opens the transaction before its first statement: a writer's reads
        the latest committed data after taking the revision counter's lock; a reader's sees
        one consistent snapshot.  On leaving, every statement has been run (the pool then
        commits, or rolls back if the block raised).
        """

    def schema_lock(cursor):
        """A context manager serializing schema creation among servers starting at once."""

    def fault(error):
        """Classify a driver exception as a ``Fault``, or ``None`` for an unexpected error."""

    def announce(cursor, channel, revision):
        """Have the database tell other servers, at commit, that ``revision`` is committed.

        A no-op for databases that cannot push notifications.
        """

    def database_size(session):
        """The ``DatabaseSize`` of the store's tables, read in ``session``'s transaction."""

    def connect():
        """A new driver connection of its own, outside the pools, for ``defragment``."""

    def defragment(connection):
        """Reclaim the space of deleted rows of the store's tables, on ``connection``.

        ``connection`` comes from ``connect`` and runs nothing else; statements that
        cannot run inside a transaction (SQLite's and PostgreSQL's VACUUM) may be used.
        """

    def listen(reactor, channel, observer):
        """Start receiving other servers' announcements on ``channel``.

        A coroutine: once the first attempt to listen ended (later attempts retry), it
        returns an object with ``stop() -> Deferred`` that calls ``observer(revision)`` in
        the reactor thread for every announcement, or ``None`` where the database cannot push.
        """
