"""etcd's KV, change feed and lease semantics, in memory and as plainly as possible.

The property tests run random operations against a store and this model and compare every
answer.  The model keeps, per key, every change ever made (no compaction of its own
memory: compaction only moves the floor below which reads fail) and answers each question
by scanning that history, so it shares no algorithm with the SQL store beyond the request
checks of ``k8s_sql.store.checks``, which ``test_checks.py`` pins against etcd's behaviour.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from k8s_sql.store import checks
from k8s_sql.store.errors import Compacted, FutureRevision, KeyNotFound, LeaseExists, LeaseNotFound, LeaseTTLTooLarge
from k8s_sql.store.model import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    DeleteRangeResponse,
    Event,
    EventType,
    KeyValue,
    Lease,
    LeaseTimeToLive,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    SortOrder,
    SortTarget,
    TxnRequest,
    TxnResponse,
)


def in_range(key: bytes, start: bytes, end: bytes) -> bool:
    """Whether an etcd request's ``(start, end)`` names ``key``."""
    if not end:
        return key == start
    if end == b"\0":
        return key >= start
    return start <= key < end


class Reference:
    """An in-memory etcd: revisions, history, compaction floor and leases.

    It may start at a later ``revision`` with history before it compacted at ``compacted``,
    to follow a real etcd that served other requests first (for keys those never touched).
    """

    def __init__(self, revision: int = 1, compacted: int = -1) -> None:
        self.revision = revision
        self.compacted = compacted
        #: Every change, in order: (revision, key, the new version or None for a delete).
        self.history: list[tuple[int, bytes, KeyValue | None]] = []
        self.leases: dict[int, Lease] = {}
        self._pending = 0

    # -- state -------------------------------------------------------------------------

    def state(self, at: int | None = None) -> dict[bytes, KeyValue]:
        """Every live key as of revision ``at`` (the newest, with pending changes, by default)."""
        live: dict[bytes, KeyValue] = {}
        for revision, key, kv in self.history:
            if at is not None and revision > at:
                break
            if kv is None:
                live.pop(key, None)
            else:
                live[key] = kv
        return live

    @property
    def _now_revision(self) -> int:
        return self.revision + (1 if self._pending else 0)

    # -- KV ----------------------------------------------------------------------------

    def range(self, request: RangeRequest) -> RangeResponse:
        checks.check_range(request)
        current = self._now_revision
        at = request.revision
        if at > current:
            raise FutureRevision()
        if at <= 0:
            at = current
        if at < self.compacted:
            raise Compacted(max(self.compacted, 0))
        found = sorted(
            (kv for key, kv in self.state(at).items() if in_range(key, request.key, request.range_end)),
            key=lambda kv: kv.key,
        )
        if request.count_only:
            return RangeResponse(current, count=len(found))
        count = len(found)
        filtered = request.sort_order != SortOrder.NONE or any(
            (request.min_mod_revision, request.max_mod_revision, request.min_create_revision, request.max_create_revision)
        )
        if request.limit > 0 and not filtered:
            found = found[: request.limit + 1]
        found = [
            kv
            for kv in found
            if (not request.max_mod_revision or kv.mod_revision <= request.max_mod_revision)
            and (not request.min_mod_revision or kv.mod_revision >= request.min_mod_revision)
            and (not request.min_create_revision or kv.create_revision >= request.min_create_revision)
            and (not request.max_create_revision or kv.create_revision <= request.max_create_revision)
        ]
        order = request.sort_order
        if request.sort_target != SortTarget.KEY and order == SortOrder.NONE:
            order = SortOrder.ASCEND
        field = {
            SortTarget.KEY: "key",
            SortTarget.VERSION: "version",
            SortTarget.CREATE: "create_revision",
            SortTarget.MOD: "mod_revision",
            SortTarget.VALUE: "value",
        }[request.sort_target]
        if order != SortOrder.NONE:
            found.sort(key=lambda kv: getattr(kv, field), reverse=order == SortOrder.DESCEND)
        more = False
        if request.limit > 0 and len(found) > request.limit:
            found, more = found[: request.limit], True
        if request.keys_only:
            found = [dataclasses.replace(kv, value=b"") for kv in found]
        return RangeResponse(current, tuple(found), more, count)

    def put(self, request: PutRequest) -> PutResponse:
        checks.check_put(request)
        if request.lease and request.lease not in self.leases:
            raise LeaseNotFound()
        response = self._put(request)
        self._commit()
        return response

    def delete_range(self, request: DeleteRangeRequest) -> DeleteRangeResponse:
        checks.check_delete(request)
        response = self._delete(request)
        self._commit()
        return response

    def txn(self, request: TxnRequest) -> TxnResponse:
        checks.check_txn(request)
        before = self.state()
        path = self._path(request, before)
        chosen = list(self._chosen_ops(request, path))
        for op in chosen:
            if isinstance(op, PutRequest):
                if (op.ignore_value or op.ignore_lease) and op.key not in before:
                    raise KeyNotFound()
                if op.lease and op.lease not in self.leases:
                    raise LeaseNotFound()
        for op in chosen:
            if isinstance(op, RangeRequest) and op.revision:
                if op.revision > self.revision:
                    raise FutureRevision()
                if op.revision < self.compacted:
                    raise Compacted(max(self.compacted, 0))
        kept = len(self.history)
        try:
            response = self._apply(request, path)
        except KeyNotFound:
            # etcd itself panics here (a put keeping the value or lease of a key deleted
            # earlier in the same transaction); the store refuses the whole transaction.
            del self.history[kept:]
            self._pending = 0
            raise
        self._commit()
        return dataclasses.replace(response, revision=self.revision)

    def compact(self, revision: int, physical: bool) -> int:
        if revision <= self.compacted:
            raise Compacted(max(self.compacted, 0))
        if revision > self.revision:
            raise FutureRevision()
        self.compacted = revision
        return self.revision

    def changes(self, after: int, limit: int, from_compaction: bool = False) -> tuple[Event, ...]:
        """Events after ``after``: at least ``limit`` when there are, whole revisions only.

        From the compaction revision itself, as etcd: its puts without ``prev_kv``, not its
        deletions."""
        if after < self.compacted - from_compaction:
            raise Compacted(max(self.compacted, 0))
        events: list[Event] = []
        for revision, key, kv in self.history:
            if revision <= after or (revision <= self.compacted and kv is None):
                continue
            if len(events) >= limit and events[-1].kv.mod_revision != revision:
                break
            prev = self.state(revision - 1).get(key) if revision > self.compacted else None
            if kv is None:
                events.append(Event(EventType.DELETE, KeyValue(key, mod_revision=revision), prev))
            else:
                events.append(Event(EventType.PUT, kv, prev if kv.create_revision != revision else None))
        return tuple(events)

    # -- leases ------------------------------------------------------------------------

    def lease_grant(self, lease_id: int, ttl: int, now: float) -> Lease:
        if ttl > 9_000_000_000:
            raise LeaseTTLTooLarge()
        if lease_id in self.leases:
            raise LeaseExists()
        lease = self.leases[lease_id] = Lease(lease_id, ttl, now + ttl)
        return lease

    def lease_revoke(self, lease_id: int) -> int:
        if lease_id not in self.leases:
            raise LeaseNotFound()
        for key in sorted(key for key, kv in self.state().items() if kv.lease == lease_id):
            self._record(key, None)
        del self.leases[lease_id]
        self._commit()
        return self.revision

    def lease_renew(self, lease_id: int, now: float) -> int:
        lease = self.leases.get(lease_id)
        if lease is None or lease.deadline < now:
            return 0
        self.leases[lease_id] = Lease(lease_id, lease.granted_ttl, now + lease.granted_ttl)
        return lease.granted_ttl

    def lease_time_to_live(self, lease_id: int, keys: bool, now: float) -> LeaseTimeToLive:
        lease = self.leases.get(lease_id)
        if lease is None or lease.deadline < now:
            return LeaseTimeToLive(lease_id, -1)
        attached = tuple(sorted(key for key, kv in self.state().items() if kv.lease == lease_id)) if keys else ()
        return LeaseTimeToLive(lease_id, int(lease.deadline - now), lease.granted_ttl, attached)

    def all_leases(self) -> list[int]:
        return sorted(self.leases)

    def expire_leases(self, now: float, limit: int) -> list[int]:
        expired = sorted((lease.deadline, lease.id) for lease in self.leases.values() if lease.deadline < now)
        revoked = [lease_id for _, lease_id in expired[:limit]]
        for lease_id in revoked:
            self.lease_revoke(lease_id)
        return revoked

    # -- internals -----------------------------------------------------------------------

    def _record(self, key: bytes, kv: KeyValue | None) -> None:
        self.history.append((self.revision + 1, key, kv))
        self._pending += 1

    def _commit(self) -> None:
        if self._pending:
            self.revision += 1
            self._pending = 0

    def _put(self, request: PutRequest) -> PutResponse:
        prev = self.state().get(request.key)
        if prev is None and (request.ignore_value or request.ignore_lease):
            raise KeyNotFound()
        revision = self.revision + 1
        kv = KeyValue(
            request.key,
            prev.create_revision if prev else revision,
            revision,
            prev.version + 1 if prev else 1,
            prev.value if request.ignore_value and prev else request.value,
            prev.lease if request.ignore_lease and prev else request.lease,
        )
        self._record(request.key, kv)
        return PutResponse(revision, prev if request.prev_kv else None)

    def _delete(self, request: DeleteRangeRequest) -> DeleteRangeResponse:
        doomed = sorted(
            (kv for key, kv in self.state().items() if in_range(key, request.key, request.range_end)),
            key=lambda kv: kv.key,
        )
        for kv in doomed:
            self._record(kv.key, None)
        return DeleteRangeResponse(self._now_revision, len(doomed), tuple(doomed) if request.prev_kv else ())

    def _path(self, request: TxnRequest, before: dict[bytes, KeyValue]) -> dict[int, bool]:
        """Whether each (nested) transaction on the chosen path succeeds, by ``id``."""
        succeeded = all(self._compare(compare, before) for compare in request.compare)
        path = {id(request): succeeded}
        for op in request.success if succeeded else request.failure:
            if isinstance(op, TxnRequest):
                path.update(self._path(op, before))
        return path

    def _chosen_ops(self, request: TxnRequest, path: dict[int, bool]) -> Any:
        for op in request.success if path[id(request)] else request.failure:
            if isinstance(op, TxnRequest):
                yield from self._chosen_ops(op, path)
            else:
                yield op

    def _compare(self, compare: Compare, before: dict[bytes, KeyValue]) -> bool:
        kvs = [kv for key, kv in before.items() if in_range(key, compare.key, compare.range_end)]
        if not kvs:
            if compare.target == CompareTarget.VALUE:
                return False
            kvs = [KeyValue(compare.key)]
        for kv in kvs:
            if compare.target == CompareTarget.VALUE:
                actual: Any = kv.value
                operand: Any = compare.operand if isinstance(compare.operand, bytes) else b""
            else:
                actual = {
                    CompareTarget.VERSION: kv.version,
                    CompareTarget.CREATE: kv.create_revision,
                    CompareTarget.MOD: kv.mod_revision,
                    CompareTarget.LEASE: kv.lease,
                }[compare.target]
                operand = compare.operand if isinstance(compare.operand, int) else 0
            holds = {
                CompareResult.EQUAL: actual == operand,
                CompareResult.NOT_EQUAL: actual != operand,
                CompareResult.GREATER: actual > operand,
                CompareResult.LESS: actual < operand,
            }[compare.result]
            if not holds:
                return False
        return True

    def _apply(self, request: TxnRequest, path: dict[int, bool]) -> TxnResponse:
        responses: list[Any] = []
        for op in request.success if path[id(request)] else request.failure:
            if isinstance(op, RangeRequest):
                responses.append(self.range(op))
            elif isinstance(op, PutRequest):
                responses.append(self._put(op))
            elif isinstance(op, DeleteRangeRequest):
                responses.append(self._delete(op))
            else:
                responses.append(self._apply(op, path))
        return TxnResponse(0, path[id(request)], tuple(responses))
