"""Checks a recorded history: the KV history is linearizable, no acknowledged write is
lost, and every watch stream keeps etcd's watch guarantees.

The order of writes is the one the server claims: every write's response carries its
revision, and the run's log watch (every key, from revision 1, with prev_kv, resumed after
each break) gives the events of every revision.  The checker then verifies that this order
explains everything:

* the log: revisions 2..last without a gap, each event consistent with the state before it
  (create flag, version, prev_kv), replayed into each key's history;
* every operation: an acknowledged write claims its revision, whose events must be exactly
  its effects on the state before it (compares included); a write whose outcome is unknown
  (a timeout or a lost connection during a fault) is found in the log by its unique value,
  or matched to a revision no other operation explains, or did not happen; a read's result
  must be the state at its revision; every revision must be claimed by exactly one
  operation or be a lease expiry;
* real time: placing each write at its revision and each read just after the revision in
  its header, an operation that returned before another was called must come first; with
  the per-revision checks above that is a linearization, so the history is linearizable;
* the final read, after the faults healed, equals the replayed state;
* every watch stream, against the log (etcd's api_guarantees.md: ordered, unique,
  reliable, atomic, resumable, bookmarkable), with the right prev_kv and create flags.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from k8s_sql.proto import rpc_pb2
from tests.robustness.history import History, Operation, WatchStream

PUT, DELETE = 0, 1
#: Compare targets and results of etcdserverpb.Compare.
VERSION, CREATE, MOD, VALUE, LEASE = range(5)
EQUAL, GREATER, LESS, NOT_EQUAL = range(4)


class KV(NamedTuple):
    """One key's version."""

    key: bytes
    value: bytes
    create: int
    mod: int
    version: int
    lease: int


class Event(NamedTuple):
    """One watch event, as compared."""

    revision: int
    type: int
    kv: KV
    prev: KV | None


def kv_of(message: Any) -> KV:
    """A KV from an mvccpb.KeyValue."""
    return KV(message.key, message.value, message.create_revision, message.mod_revision, message.version, message.lease)


def event_of(message: Any) -> Event:
    """An Event from an mvccpb.Event."""
    kv = kv_of(message.kv)
    return Event(kv.mod, message.type, kv, kv_of(message.prev_kv) if message.HasField("prev_kv") else None)


def in_range(key: bytes, start: bytes, end: bytes) -> bool:
    """Whether ``key`` is in etcd's [start, end) (empty end: ``start`` alone; b"\\0": no end)."""
    if not end:
        return key == start
    if end == b"\0":
        return key >= start
    return start <= key < end


@dataclass
class Report:
    """What was checked, and every violation found."""

    violations: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def violation(self, text: str) -> None:
        """Record a violation (the first hundred are kept)."""
        self.counts["violations"] += 1
        if len(self.violations) < 100:
            self.violations.append(text)


class Log:
    """The revisions of the run, from its log watch, replayed into each key's history."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.revisions: dict[int, list[Event]] = {}
        self.last = 1
        self._history: dict[bytes, tuple[list[int], list[KV | None]]] = {}
        self.values: dict[bytes, int] = {}

    @classmethod
    def of(cls, streams: Iterable[WatchStream], report: Report) -> Log:
        """The log from the log watch's streams, in the order they were opened."""
        log = cls(report)
        events: list[Event] = []
        for stream in streams:
            for _, response in stream.responses:
                events.extend(event_of(event) for event in response.events)
        group: list[Event] = []
        for event in events:
            if group and event.revision != group[0].revision:
                log._add(group)
                group = []
            group.append(event)
        if group:
            log._add(group)
        return log

    def _add(self, group: list[Event]) -> None:
        revision = group[0].revision
        if revision <= self.last:
            self.report.violation(f"log: revision {revision} again or out of order after {self.last}")
            return
        if revision != self.last + 1:
            self.report.violation(f"log: revisions {self.last + 1}..{revision - 1} are missing")
        seen: set[bytes] = set()
        for event in group:
            key = event.kv.key
            before = self.state(key, revision - 1)
            if key in seen:
                self.report.violation(f"log: key {key!r} twice in revision {revision}")
            seen.add(key)
            problem = consistency(event, before, with_prev=True)
            if problem:
                self.report.violation(f"log: revision {revision} {key!r}: {problem}")
            self._set(key, revision, event.kv if event.type == PUT else None)
            if event.type == PUT:
                self.values[event.kv.value] = revision
        self.revisions[revision] = group
        self.last = revision

    def _set(self, key: bytes, revision: int, kv: KV | None) -> None:
        revisions, versions = self._history.setdefault(key, ([], []))
        revisions.append(revision)
        versions.append(kv)

    def state(self, key: bytes, at: int) -> KV | None:
        """The key's version as of revision ``at``."""
        history = self._history.get(key)
        if history is None:
            return None
        index = bisect.bisect_right(history[0], at) - 1
        return history[1][index] if index >= 0 else None

    def range(self, start: bytes, end: bytes, at: int) -> list[KV]:
        """The keys of [start, end) as of ``at``, in key order."""
        found = [self.state(key, at) for key in sorted(self._history) if in_range(key, start, end)]
        return [kv for kv in found if kv is not None]


def consistency(event: Event, before: KV | None, with_prev: bool) -> str | None:
    """What is wrong with ``event`` given the key's version ``before`` it, if anything."""
    kv, revision = event.kv, event.revision
    if kv.mod != revision:
        return f"mod_revision {kv.mod} in revision {revision}"
    if event.type == DELETE:
        if before is None:
            return "a delete of a key that does not exist"
        if with_prev and event.prev != before:
            return f"prev_kv {event.prev} where the key was {before}"
        return None
    if before is None:
        if (kv.create, kv.version) != (revision, 1):
            return f"a create with create_revision {kv.create} and version {kv.version}"
        if with_prev and event.prev is not None:
            return "prev_kv on a create event"
        return None
    if (kv.create, kv.version) != (before.create, before.version + 1):
        return f"create_revision/version {kv.create}/{kv.version} after {before.create}/{before.version}"
    if with_prev and event.prev != before:
        return f"prev_kv {event.prev} where the key was {before}"
    return None


# --- operations ---------------------------------------------------------------------------


class Placed(NamedTuple):
    """An operation placed in the linear order: a write at (revision, 0), a read at (revision, 1)."""

    position: tuple[int, int]
    call: float
    returned: float | None
    operation: Operation


def effects(branch: Iterable[Any], log: Log, at: int) -> list[tuple[int, bytes, bytes, int]] | None:
    """The (type, key, value, lease) changes a branch of RequestOps makes on the state at
    ``at``, in key order; None if a branch holds anything but puts and deletes."""
    changes: dict[bytes, tuple[int, bytes, bytes, int]] = {}
    for op in branch:
        which = op.WhichOneof("request")
        request = getattr(op, which)
        if which == "request_put":
            changes[request.key] = (PUT, request.key, request.value, request.lease)
        elif which == "request_delete_range":
            for kv in log.range(request.key, request.range_end, at):
                changes[kv.key] = (DELETE, kv.key, b"", 0)
        else:
            return None
    return [changes[key] for key in sorted(changes)]


def logged_effects(log: Log, revision: int) -> list[tuple[int, bytes, bytes, int]]:
    """The changes of one logged revision, in key order."""
    events = log.revisions.get(revision, [])
    return sorted(
        ((event.type, event.kv.key, event.kv.value if event.type == PUT else b"", event.kv.lease) for event in events),
        key=lambda change: change[1],
    )


def holds(compare: Any, kv: KV | None) -> bool:
    """etcd's applyCompare for one key's version (missing keys compare as zeros, VALUE fails)."""
    if kv is None:
        if compare.target == VALUE:
            return False
        kv = KV(compare.key, b"", 0, 0, 0, 0)
    actual, expected = {
        VERSION: (kv.version, compare.version),
        CREATE: (kv.create, compare.create_revision),
        MOD: (kv.mod, compare.mod_revision),
        VALUE: (kv.value, compare.value),
        LEASE: (kv.lease, compare.lease),
    }[compare.target]
    return {
        EQUAL: actual == expected,
        GREATER: actual > expected,
        LESS: actual < expected,
        NOT_EQUAL: actual != expected,
    }[compare.result]


def compares_hold(request: Any, log: Log, at: int) -> bool:
    """Whether every compare of a TxnRequest holds on the state at ``at``."""
    for compare in request.compare:
        kvs = log.range(compare.key, compare.range_end, at) if compare.range_end else [log.state(compare.key, at)]
        if not kvs:
            kvs = [None]
        if not all(holds(compare, kv) for kv in kvs):
            return False
    return True


def check_range(request: Any, response: Any, log: Log, report: Report, what: str) -> None:
    """A range's answer must be the state at its revision."""
    at = request.revision or response.header.revision
    expected = log.range(request.key, request.range_end, at)
    count = len(expected)
    if request.limit and len(expected) > request.limit:
        expected = expected[: request.limit]
    more = 0 < request.limit < count
    got = [kv_of(kv) for kv in response.kvs]
    if request.keys_only:
        expected = [kv._replace(value=b"") for kv in expected]
    if request.count_only:
        got, expected = [], []
    if got != expected or response.count != count or response.more != more:
        report.violation(
            f"{what}: a range of {request.key!r} at {at} read {len(got)} keys (count {response.count}, more "
            f"{response.more}) where the state held {count}: got {got[:3]} expected {expected[:3]}"
        )


class Checker:
    """Runs every check on one history."""

    def __init__(self, history: History) -> None:
        self.history = history
        self.report = Report()
        self.log = Log.of((s for s in history.watches if s.log), self.report)
        self.claims: dict[int, Operation] = {}
        self.placed: list[Placed] = []
        self.pending: list[Operation] = []
        self._ranges: dict[tuple[bytes, bytes], tuple[list[Event], list[int]]] = {}
        #: Revisions compacted at: their events reach a watch from there without prev_kv, as in etcd.
        self.compactions = {op.request.revision for op in history.operations if op.method == "Compact"}

    def run(self) -> Report:
        """Every check; the report lists what failed."""
        counts = self.report.counts
        counts["revisions"] = self.log.last
        for operation in self.history.operations:
            counts["operations"] += 1
            counts[f"operations.{operation.method}"] += 1
            if operation.unknown:
                counts["unknown outcome"] += 1
            self.operation(operation)
        self.resolve()
        self.real_time()
        self.final()
        for stream in self.history.watches:
            counts["watch streams"] += 1
            self.watch(stream)
        return self.report

    # Each operation

    def operation(self, op: Operation) -> None:
        method = op.method
        if method in ("Put", "Txn", "DeleteRange", "LeaseRevoke"):
            self.write(op)
        elif method == "Range" and not op.error and op.returned is not None:
            check_range(op.request, op.response, self.log, self.report, f"client {op.client}")
            self.place(op, op.response.header.revision, read=True)

    def claim(self, op: Operation, revision: int) -> bool:
        if revision in self.claims:
            self.report.violation(
                f"revision {revision} claimed by client {self.claims[revision].client}'s {self.claims[revision].method} "
                f"and client {op.client}'s {op.method}"
            )
            return False
        self.claims[revision] = op
        return True

    def place(self, op: Operation, revision: int, read: bool) -> None:
        returned = None if op.unknown else op.returned
        self.placed.append(Placed((revision, 1 if read else 0), op.call, returned, op))

    def wrote(self, op: Operation, revision: int, changes: list | None) -> None:
        """``op`` is a write at ``revision`` making ``changes``: the log must show them."""
        if revision not in self.log.revisions:
            self.report.violation(
                f"lost write: client {op.client}'s {op.method} acknowledged at revision {revision}, "
                f"which the log does not hold (last {self.log.last})"
            )
            return
        if changes is not None and logged_effects(self.log, revision) != changes:
            self.report.violation(
                f"client {op.client}'s {op.method} at revision {revision}: logged "
                f"{logged_effects(self.log, revision)}, expected {changes}"
            )
        if self.claim(op, revision):
            self.report.counts["writes checked"] += 1
            self.place(op, revision, read=False)

    def write(self, op: Operation) -> None:
        request, response, log = op.request, op.response, self.log
        if op.error and not op.unknown:
            value = request.value if op.method == "Put" else None
            if value is not None and value in log.values:
                self.report.violation(f"client {op.client}'s Put failed with {op.error} but its value is in the log")
            return
        if op.method == "Put":
            revision = response.header.revision if not op.unknown else log.values.get(request.value)
            if revision is None:
                return
            self.wrote(op, revision, [(PUT, request.key, request.value, request.lease)])
            if not op.unknown and request.prev_kv:
                prev = kv_of(response.prev_kv) if response.HasField("prev_kv") else None
                if prev != log.state(request.key, revision - 1):
                    self.report.violation(f"client {op.client}'s Put at {revision}: prev_kv {prev}")
        elif op.method == "Txn":
            self.txn(op)
        elif op.unknown:
            self.pending.append(op)
        elif op.method == "DeleteRange":
            revision = response.header.revision
            if response.deleted:
                self.wrote(op, revision, effects([_op(request)], log, revision - 1))
                if request.prev_kv and [kv_of(kv) for kv in response.prev_kvs] != log.range(
                    request.key, request.range_end, revision - 1
                ):
                    self.report.violation(f"client {op.client}'s DeleteRange at {revision}: wrong prev_kvs")
            else:
                if log.range(request.key, request.range_end, revision):
                    self.report.violation(f"client {op.client}'s DeleteRange deleted nothing at {revision}")
                self.place(op, revision, read=True)
        else:  # LeaseRevoke
            revision = response.header.revision
            if self.lease_revision(request.ID, revision) and revision not in self.claims:
                self.wrote(op, revision, None)
            else:
                if any(kv.lease == request.ID for kv in log.range(b"\0", b"\0", revision)):
                    self.report.violation(f"lease {request.ID} revoked at {revision} still has keys")
                self.place(op, revision, read=True)

    def txn(self, op: Operation) -> None:
        request, response, log = op.request, op.response, self.log
        if op.unknown:
            puts = [o.request_put.value for o in request.success if o.WhichOneof("request") == "request_put"]
            revision = next((log.values[v] for v in puts if v in log.values), None)
            if revision is not None:
                self.txn_wrote(op, True, revision)
            elif not puts:
                self.pending.append(op)
            return
        succeeded = response.succeeded
        branch = request.success if succeeded else request.failure
        revision = response.header.revision
        changes = effects(branch, log, revision - 1)
        if changes is None or not changes:  # a read-only branch
            if compares_hold(request, log, revision) != succeeded:
                self.report.violation(f"client {op.client}'s Txn at {revision}: compares do not give {succeeded}")
            for sub, result in zip(branch, response.responses):
                if sub.WhichOneof("request") == "request_range":
                    check_range(sub.request_range, result.response_range, log, self.report, f"client {op.client} txn")
            self.place(op, revision, read=True)
            return
        self.txn_wrote(op, succeeded, revision)

    def txn_wrote(self, op: Operation, succeeded: bool, revision: int) -> None:
        request = op.request
        branch = request.success if succeeded else request.failure
        if compares_hold(request, self.log, revision - 1) != succeeded:
            self.report.violation(f"client {op.client}'s Txn at {revision}: compares do not give {succeeded}")
        self.wrote(op, revision, effects(branch, self.log, revision - 1))

    def lease_revision(self, lease: int, revision: int) -> bool:
        """Whether ``revision`` deletes exactly the keys lease ``lease`` held before it."""
        events = self.log.revisions.get(revision)
        if not events or any(event.type != DELETE for event in events):
            return False
        held = [kv.key for kv in self.log.range(b"\0", b"\0", revision - 1) if kv.lease == lease]
        return bool(held) and sorted(event.kv.key for event in events) == held

    def resolve(self) -> None:
        """Match revisions no acknowledged write claimed to unknown-outcome writes, or to
        lease expiries; anything else is a write nobody made.

        An unknown-outcome write can only have taken a revision above every operation that
        returned before it was called.
        """
        returned = sorted((p for p in self.placed if p.returned is not None), key=lambda p: p.returned)
        times = [p.returned for p in returned]
        highest = list(itertools.accumulate((p.position[0] for p in returned), max))
        floor = {}
        for op in self.pending:
            index = bisect.bisect_left(times, op.call)
            floor[id(op)] = highest[index - 1] if index else 0
        for revision in range(2, self.log.last + 1):
            if revision in self.claims or revision not in self.log.revisions:
                continue
            for op in self.pending:
                if revision > floor[id(op)] and self.explains(op, revision):
                    self.pending.remove(op)
                    if op.method == "Txn":
                        self.txn_wrote(op, True, revision)
                    else:
                        self.wrote(op, revision, None)
                    self.report.counts["unknown outcomes resolved"] += 1
                    break
            else:
                events = self.log.revisions[revision]
                leases = {event.prev.lease for event in events if event.prev is not None}
                if len(leases) == 1 and self.lease_revision(leases.pop(), revision):
                    self.report.counts["lease expiries"] += 1
                else:
                    self.report.violation(f"revision {revision} ({logged_effects(self.log, revision)}) explained by no operation")

    def explains(self, op: Operation, revision: int) -> bool:
        request, log = op.request, self.log
        if op.method == "DeleteRange":
            return effects([_op(request)], log, revision - 1) == logged_effects(log, revision) != []
        if op.method == "LeaseRevoke":
            return self.lease_revision(request.ID, revision)
        return compares_hold(request, log, revision - 1) and (
            effects(request.success, log, revision - 1) == logged_effects(log, revision) != []
        )

    # Real time

    def real_time(self) -> None:
        """An operation that returned before another was called must come first."""
        returned = sorted((p for p in self.placed if p.returned is not None), key=lambda p: p.returned)
        latest: list[tuple[tuple[int, int], Placed]] = []
        index = 0
        for placed in sorted(self.placed, key=lambda p: p.call):
            while index < len(returned) and returned[index].returned < placed.call:  # type: ignore[operator]
                heapq.heappush(latest, (_negate(returned[index].position), returned[index]))
                index += 1
            if latest:
                position, before = _negate(latest[0][0]), latest[0][1]
                if position > placed.position or (position == placed.position and placed.position[1] == 0):
                    op, earlier = placed.operation, before.operation
                    self.report.violation(
                        f"real time: client {op.client}'s {op.method} called at {op.call:.3f} is placed at "
                        f"{placed.position}, before client {earlier.client}'s {earlier.method} at {position}, "
                        f"which returned at {earlier.returned:.3f}"
                    )
        self.report.counts["operations placed"] = len(self.placed)

    def final(self) -> None:
        final = self.history.final
        if final is None:
            return
        at = final.header.revision
        if at != self.log.last:
            self.report.violation(f"the log ends at revision {self.log.last}, the final read at {at}")
        expected = self.log.range(b"\0", b"\0", at)
        if [kv_of(kv) for kv in final.kvs] != expected:
            self.report.violation("the final read differs from the replayed log")
        self.report.counts["keys at the end"] = len(expected)

    # Watches

    def watch(self, stream: WatchStream) -> None:
        """One watch stream: etcd's per-stream checks, then its events against the log."""
        request = stream.request
        who = f"watch of client {stream.client} on {request.key!r} from {request.start_revision}"
        if not stream.responses:
            return
        first = stream.responses[0][1]
        if not first.created:
            self.report.violation(f"{who}: the first response is not the creation")
            return
        self.report.counts["progress notifications"] += sum(_is_progress(r) for _, r in stream.responses)
        for problem in self.stream_guarantees(stream):
            self.report.violation(f"{who}: {problem}")
        problem = self.against_the_log(stream, request.start_revision or first.header.revision + 1)
        if problem:
            self.report.violation(f"{who}: {problem}")

    def stream_guarantees(self, stream: WatchStream) -> Iterator[str]:
        """Ordered, unique, atomic and bookmarkable, as etcd's robustness suite checks them."""
        last = notified = 0
        seen: set[tuple[int, bytes]] = set()
        for _, response in stream.responses:
            if response.header.revision == 0:
                yield "a response without a header revision"
            if _is_progress(response):
                notified = response.header.revision
            events = [event_of(e) for e in response.events]
            if events and events[0].revision == last:
                yield f"Atomic: revision {last} split over two responses"
            for event in events:
                if event.revision < last:
                    yield f"Ordered: revision {event.revision} after {last}"
                if (event.revision, event.kv.key) in seen:
                    yield f"Unique: revision {event.revision} of {event.kv.key!r} twice"
                if event.revision <= notified:
                    yield f"Bookmarkable: event at {event.revision} after a progress notification at {notified}"
                if event.revision > response.header.revision:
                    yield f"an event at {event.revision} in a response with header revision {response.header.revision}"
                seen.add((event.revision, event.kv.key))
                last = event.revision

    def against_the_log(self, stream: WatchStream, start: int) -> str | None:
        """Reliable and resumable: from ``start``, the stream's events are the log's for its
        range, in order and with nothing missing, with the right create flags and prev_kv;
        a progress notification comes only once every event up to it was delivered."""
        request, counts = stream.request, self.report.counts
        events, revisions = self.events_of(request.key, request.range_end)
        first = bisect.bisect_left(revisions, start)
        received = 0
        for _, response in stream.responses:
            if response.compact_revision:
                counts["watches compacted"] += 1
                if response.events or not 0 < request.start_revision < response.compact_revision:
                    return f"cancelled as compacted at {response.compact_revision} wrongly"
                return None
            if _is_progress(response):
                due = bisect.bisect_right(revisions, response.header.revision) - first
                if received < due:
                    return (
                        f"Bookmarkable: progress notification at {response.header.revision} with {received} of "
                        f"the {due} events up to it delivered"
                    )
            for message in response.events:
                event = event_of(message)
                if first + received >= len(events):
                    return f"revision {event.revision} of {event.kv.key!r}, which the log does not hold"
                problem = self.watch_event(event, events[first + received], request.prev_kv)
                if problem:
                    return problem
                received += 1
                counts["watch events checked"] += 1
        return None

    def events_of(self, key: bytes, range_end: bytes) -> tuple[list[Event], list[int]]:
        """The log's events in [key, range_end), and their revisions (cached per range)."""
        cached = self._ranges.get((key, range_end))
        if cached is None:
            events = [
                event
                for revision in range(2, self.log.last + 1)
                for event in self.log.revisions.get(revision, ())
                if in_range(event.kv.key, key, range_end)
            ]
            cached = self._ranges[key, range_end] = (events, [event.revision for event in events])
        return cached

    def watch_event(self, event: Event, want: Event, prev_kv: bool) -> str | None:
        """What is wrong with ``event`` where the log has ``want``, if anything."""
        if (event.revision, event.kv.key) != (want.revision, want.kv.key):
            return f"Reliable: revision {want.revision} of {want.kv.key!r} missing, got {event.revision} of {event.kv.key!r}"
        if event.type != want.type or event.kv != want.kv:
            return f"revision {event.revision} of {event.kv.key!r}: {event} where the log has {want}"
        before = self.log.state(event.kv.key, event.revision - 1)
        create = event.type == PUT and event.kv.create == event.kv.mod
        if create != (event.type == PUT and before is None):
            return f"revision {event.revision} of {event.kv.key!r}: create flag {create} on a key that was {before}"
        if prev_kv and event.prev is None and not create and event.revision in self.compactions:
            self.report.counts["events at a compaction revision, without prev_kv"] += 1
        elif prev_kv and event.prev != (None if create else before):
            return f"revision {event.revision} of {event.kv.key!r}: prev_kv {event.prev} where the key was {before}"
        if not prev_kv and event.prev is not None:
            return f"revision {event.revision}: prev_kv sent unasked"
        return None


def _is_progress(response: Any) -> bool:
    """Whether a WatchResponse is a progress notification (no events, no creation or cancel)."""
    return not response.events and not response.created and not response.canceled


def _op(request: Any) -> Any:
    """A DeleteRangeRequest as the branch op ``effects`` takes."""
    return rpc_pb2.RequestOp(request_delete_range=request)


def _negate(position: tuple[int, int]) -> tuple[int, int]:
    return (-position[0], -position[1])


def check(history: History) -> Report:
    """Run every check on ``history``."""
    return Checker(history).run()
