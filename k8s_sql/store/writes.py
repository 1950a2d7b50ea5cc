"""Writing as etcd does: each write takes the next revision.

A write transaction takes the revision counter's lock first (``Executor.locked``) and holds
it until commit, so the revisions it writes are the next ones and become visible only after
every revision below them.  An ``Executor`` runs one etcd write: all its changes share one
revision and are numbered by ``sub`` in the order they happen.  ``apply`` runs several
writes in one transaction, each with an executor and a revision of its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TypeVar

from k8s_sql.store.errors import FutureRevision, KeyNotFound, LeaseNotFound, StoreError
from k8s_sql.store.keys import KeyRange
from k8s_sql.store.model import (
    DeleteRangeRequest,
    DeleteRangeResponse,
    KeyValue,
    PutRequest,
    PutResponse,
    RangeRequest,
    RequestOp,
    ResponseOp,
    TxnRequest,
    TxnResponse,
)
from k8s_sql.store.reads import CURRENT, HEADER, WHERE, Reader, current_row
from k8s_sql.store.session import Session

T = TypeVar("T")

INSERT_LOG = (
    "INSERT INTO k8s_log (revision, sub, k, create_revision, version, lease, value, deleted, prev_revision, prev_sub)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_KV = (
    "INSERT INTO k8s_kv (k, create_revision, mod_revision, sub, version, lease, value) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_UPDATE_KV = "UPDATE k8s_kv SET mod_revision = ?, sub = ?, version = ?, lease = ?, value = ? WHERE k = ?"
_DELETE_KV = {shape: f"DELETE FROM k8s_kv WHERE {where.format(t='')}" for shape, where in WHERE.items()}


class BatchFailure(StoreError):
    """Write number ``index`` of a batch failed with ``error``: the transaction is rolled back."""

    def __init__(self, index: int, error: StoreError) -> None:
        super().__init__(index, error)
        self.index = index
        self.error = error


def apply(session: Session, writes: Sequence[tuple[Callable[..., T], tuple]]) -> tuple[list[T], int | None]:
    """Run ``operation(executor, *args)`` for each write, in order, in one transaction.

    The revision counter is locked once; each write that changes anything takes the next
    revision and sees the writes before it, as if each had been a transaction of its own;
    the counter is set once at the end.  Returns the results and the new revision, or
    ``None`` when nothing changed.  A ``StoreError`` from one write is raised as a
    ``BatchFailure`` naming it: none of the batch is committed.
    """
    executor = Executor.locked(session)
    first = executor.begin
    results = []
    for index, (operation, args) in enumerate(writes):
        if index:
            executor = executor.following()
        try:
            results.append(operation(executor, *args))
        except StoreError as error:
            raise BatchFailure(index, error) from error
    if executor.revision == first:
        return results, None
    session.run("UPDATE k8s_revision SET revision = ? WHERE id = 1", executor.revision)
    return results, executor.revision


@dataclasses.dataclass(frozen=True)
class _Decision:
    """Which branch a transaction takes, and the decisions of the transactions nested in it."""

    succeeded: bool
    nested: tuple[_Decision, ...]

    def ops(self, request: TxnRequest) -> tuple[RequestOp, ...]:
        return request.success if self.succeeded else request.failure


class Executor:
    """Runs etcd operations inside one database transaction.

    ``begin`` is the revision before the transaction; its changes take ``begin + 1``.
    """

    def __init__(self, session: Session, begin: int, compacted: int) -> None:
        self.session = session
        self.begin = begin
        self.reader = Reader(session, begin, compacted)
        self.changes = 0
        #: Keys changed at this revision, with the log row of their version as of ``begin``.
        self._before: dict[bytes, tuple[int, int]] = {}

    @classmethod
    def locked(cls, session: Session) -> Executor:
        """An executor for a write transaction, taking the revision counter's lock."""
        revision, compacted = session.row(HEADER + session.dialect.lock_suffix)
        return cls(session, revision, compacted)

    @classmethod
    def read_only(cls, session: Session) -> Executor:
        """An executor for a read-only transaction, for etcd transactions that only read."""
        reader = Reader.snapshot(session)
        return cls(session, reader.revision, reader.compacted)

    @property
    def revision(self) -> int:
        """The revision the data has now: ``begin``, or ``begin + 1`` once something changed."""
        return self.begin + 1 if self.changes else self.begin

    def following(self) -> Executor:
        """An executor for the next write of the same database transaction, at the next revision."""
        return Executor(self.session, self.revision, self.reader.compacted)

    def restart_at(self, revision: int) -> None:
        """Carry on from ``revision``, compacted there, the counter having been set to it
        (a snapshot load): the writes after this one in the transaction follow it."""
        self.begin = self.reader.revision = self.reader.compacted = revision
        self.changes = 0
        self._before.clear()

    def put(self, request: PutRequest) -> PutResponse:
        """A standalone put: the lease must exist, then the key if the request keeps its value or lease."""
        self._require_lease(request.lease)
        return self._put(request)

    def delete_range(self, request: DeleteRangeRequest) -> DeleteRangeResponse:
        """Delete the keys of a range; nothing deleted takes no revision."""
        keys = KeyRange.of(request.key, request.range_end)
        rows = self.session.all(CURRENT[keys.shape, request.prev_kv, False], *keys.params)
        self.delete_rows(rows, _DELETE_KV[keys.shape], *keys.params)
        prev = tuple(current_row(row)[0] for row in rows) if request.prev_kv else ()
        return DeleteRangeResponse(self.revision, len(rows), prev)

    def delete_rows(self, rows: list[tuple], statement: str, *params: object) -> None:
        """Delete the keys of ``CURRENT`` rows, which ``statement`` removes from ``k8s_kv``."""
        if not rows:
            return
        revision = self.begin + 1
        tombstones = []
        for sub, row in enumerate(rows, self.changes):
            kv, kv_sub = current_row(row)
            tombstones.append((revision, sub, kv.key, 0, 0, 0, b"", 1, *self._before_change(kv.key, kv, kv_sub)))
        for tombstone in tombstones:
            self.session.defer(INSERT_LOG, *tombstone)
        self.session.run(statement, *params)
        self._changed(len(rows))

    def txn(self, request: TxnRequest) -> TxnResponse:
        """Run a transaction as etcd's applier does.

        Every compare, nested ones included, sees the data as it was before the
        transaction; then the chosen operations are checked (missing keys and leases first,
        then revisions) and only then executed, in order, each seeing the ones before.
        """
        decision = self._decide(request)
        self._walk(request, decision, self._check_write)
        self._walk(request, decision, self._check_revision)
        return dataclasses.replace(self._apply(request, decision), revision=self.revision)

    def _put(self, request: PutRequest) -> PutResponse:
        row = self.session.one(CURRENT["one", request.prev_kv or request.ignore_value, False], request.key)
        if row is None and (request.ignore_value or request.ignore_lease):
            raise KeyNotFound()
        prev, prev_sub = current_row(row) if row is not None else (None, 0)
        value = prev.value if request.ignore_value and prev else request.value
        lease = prev.lease if request.ignore_lease and prev else request.lease
        revision, sub = self.begin + 1, self.changes
        before = self._before_change(request.key, prev, prev_sub)
        create = prev.create_revision if prev else revision
        version = prev.version + 1 if prev else 1
        self.session.defer(INSERT_LOG, revision, sub, request.key, create, version, lease, value, 0, *before)
        if prev:
            self.session.run(_UPDATE_KV, revision, sub, version, lease, value, request.key)
        else:
            self.session.run(INSERT_KV, request.key, create, revision, sub, version, lease, value)
        self._changed(1)
        return PutResponse(revision, prev if request.prev_kv else None)

    def _before_change(self, key: bytes, current: KeyValue | None, sub: int) -> tuple[int, int]:
        """The log row of ``key``'s version as of ``begin`` ((0, 0) for none): its events' ``prev_kv``."""
        if key not in self._before:
            self._before[key] = (current.mod_revision, sub) if current else (0, 0)
        return self._before[key]

    def _changed(self, count: int) -> None:
        self.changes += count
        self.reader.revision = self.begin + 1

    def _require_lease(self, lease: int) -> None:
        if lease and not self.reader.lease_exists(lease):
            raise LeaseNotFound()

    def _decide(self, request: TxnRequest) -> _Decision:
        succeeded = all(self.reader.compare(compare) for compare in request.compare)
        ops = request.success if succeeded else request.failure
        return _Decision(succeeded, tuple(self._decide(op) for op in ops if isinstance(op, TxnRequest)))

    def _walk(self, request: TxnRequest, decision: _Decision, check: Callable[[RequestOp], None]) -> None:
        nested = iter(decision.nested)
        for op in decision.ops(request):
            if isinstance(op, TxnRequest):
                self._walk(op, next(nested), check)
            else:
                check(op)

    def _check_write(self, op: RequestOp) -> None:
        if not isinstance(op, PutRequest):
            return
        if (op.ignore_value or op.ignore_lease) and not self.reader.fetch(
            KeyRange.of(op.key, b""), self.begin, 0, False
        )[0]:
            raise KeyNotFound()
        self._require_lease(op.lease)

    def _check_revision(self, op: RequestOp) -> None:
        if not isinstance(op, RangeRequest) or op.revision == 0:
            return
        if op.revision > self.begin:
            raise FutureRevision()
        if op.revision < self.reader.compacted:
            raise self.reader.compacted_error()

    def _apply(self, request: TxnRequest, decision: _Decision) -> TxnResponse:
        """Execute the chosen branch; a nested transaction reports revision 0, as etcd's."""
        nested = iter(decision.nested)
        responses: list[ResponseOp] = []
        for op in decision.ops(request):
            if isinstance(op, RangeRequest):
                responses.append(self.reader.range(op, self.revision))
            elif isinstance(op, PutRequest):
                responses.append(self._put(op))
            elif isinstance(op, DeleteRangeRequest):
                responses.append(self.delete_range(op))
            else:
                responses.append(self._apply(op, next(nested)))
        return TxnResponse(0, decision.succeeded, tuple(responses))
