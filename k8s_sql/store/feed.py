"""The change feed the watch follower tails: committed events, in revision order.

An event's ``prev_kv`` is the key's version as of the revision before the event's, as etcd
reports it.  Events at revisions above ``after`` are all still in the log, each with its
``prev_kv``, exactly when ``after`` is at or above the last compaction: compaction keeps
every row above its revision and each key's latest version at or below it.

A watch, in etcd, may also start at the compaction revision itself (``after`` one below
it).  What etcd's compaction keeps of that revision are its puts, without ``prev_kv`` (the
version before is compacted); its deletions are gone.  Asked ``from_compaction``, the feed
answers the same, whether or not the rows have been deleted yet; the watch follower, which
must not lose a deletion, does not ask it.
"""

from __future__ import annotations

import dataclasses

from k8s_sql.store.model import Event, EventType, KeyValue
from k8s_sql.store.reads import Reader
from k8s_sql.store.session import Session

_EVENTS = (
    "SELECT c.revision, c.sub, c.k, c.create_revision, c.version, c.lease, c.value, c.deleted,"
    " c.prev_revision, p.create_revision, p.version, p.lease, p.value FROM k8s_log c"
    " LEFT JOIN k8s_log p ON p.revision = c.prev_revision AND p.sub = c.prev_sub"
)
_AFTER = _EVENTS + " WHERE c.revision > ? ORDER BY c.revision, c.sub LIMIT ?"
_REST_OF_REVISION = _EVENTS + " WHERE c.revision = ? AND c.sub > ? ORDER BY c.sub"


def changes(session: Session, after: int, limit: int, from_compaction: bool = False) -> tuple[Event, ...]:
    """About ``limit`` events after revision ``after``, never splitting a revision.

    Fails with ``Compacted`` when ``after`` is below the last compaction (below it but one
    ``from_compaction``).
    """
    reader = Reader.snapshot(session)
    if after < reader.compacted - from_compaction:
        raise reader.compacted_error()
    rows = session.all(_AFTER, after, max(limit, 1))
    if len(rows) == max(limit, 1):
        rows += session.all(_REST_OF_REVISION, rows[-1][0], rows[-1][1])
    # Events at the compaction revision itself have no prev_kv, as in etcd, which looks it up
    # at the revision before, compacted.
    compacted = reader.compacted
    return tuple(_event(row) if row[0] > compacted else dataclasses.replace(_event(row), prev_kv=None) for row in rows)


def _event(row: tuple) -> Event:
    revision, _, key, create, version, lease, value, deleted, prev, p_create, p_version, p_lease, p_value = row
    prev_kv = KeyValue(key, p_create, prev, p_version, p_value, p_lease) if prev else None
    if deleted:
        return Event(EventType.DELETE, KeyValue(key, mod_revision=revision), prev_kv)
    # A key created at this revision had no previous version, even if it was deleted earlier
    # in the same revision (as etcd, which looks prev_kv up only for non-create events).
    return Event(
        EventType.PUT, KeyValue(key, create, revision, version, value, lease), prev_kv if create != revision else None
    )
