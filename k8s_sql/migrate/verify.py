"""Comparing a target with its source, key by key, after a copy.

Both are read as snapshots: the source at the revision the copy read (or its current one),
the target at its current revision, which must not be lower.  Keys are merged in key order
and must be equal in every field (value, create and mod revisions, version, lease).  Each
lease the source still holds must exist in the target with the same granted TTL; the
seconds left are not compared, since they run on.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from k8s_sql.migrate.interfaces import ISnapshotSource
from k8s_sql.migrate.progress import Progress
from k8s_sql.store.model import KeyValue, LeaseTimeToLive

_FIELDS = ("value", "create_revision", "mod_revision", "version", "lease")


@dataclass
class Report:
    """What a verification found: ``problems`` holds the first ``limit`` of ``count`` problems."""

    source_revision: int
    target_revision: int
    keys: int = 0
    count: int = 0
    problems: list[str] = field(default_factory=list)
    limit: int = 20

    @property
    def ok(self) -> bool:
        """Whether the target holds exactly the source's keys and leases."""
        return self.count == 0

    def problem(self, text: str) -> None:
        """Record one problem."""
        self.count += 1
        if len(self.problems) < self.limit:
            self.problems.append(text)


class _Cursor:
    """Reads one snapshot's keys one at a time, collecting its leases on the way."""

    def __init__(self, source: ISnapshotSource) -> None:
        self._source = source
        self._kvs: deque[KeyValue] = deque()
        self._done = False
        self.leases: dict[int, LeaseTimeToLive] = {}

    async def peek(self) -> KeyValue | None:
        while not self._kvs and not self._done:
            batch = await self._source.read()
            if batch is None:
                self._done = True
            else:
                self._kvs.extend(batch.kvs)
                self.leases.update((lease.id, lease) for lease in batch.leases)
        return self._kvs[0] if self._kvs else None

    def pop(self) -> None:
        self._kvs.popleft()


async def verify(source: ISnapshotSource, target: ISnapshotSource, progress: Progress, revision: int = 0) -> Report:
    """Compare ``target``'s current snapshot with ``source``'s at ``revision`` (0: current)."""
    expected = await source.open(revision)
    actual = await target.open(0)
    report = Report(expected.revision, actual.revision)
    if actual.revision < expected.revision:
        report.problem(f"the target's revision {actual.revision} is below the source's {expected.revision}")
    progress.start(expected.keys)
    mine, theirs = _Cursor(source), _Cursor(target)
    try:
        while True:
            want, have = await mine.peek(), await theirs.peek()
            if have is not None and (want is None or have.key < want.key):
                report.problem(f"key {have.key!r} is in the target only")
                theirs.pop()
                continue
            if want is None:
                break
            if have is None or want.key < have.key:
                report.problem(f"key {want.key!r} is missing from the target")
            else:
                if want != have:
                    report.problem(_difference(want, have))
                theirs.pop()
            mine.pop()
            report.keys += 1
            progress.advance(1, 0, len(want.key) + len(want.value))
        _compare_leases(mine.leases, theirs.leases, report)
        progress.advance(0, len(mine.leases), 0)
    finally:
        progress.stop()
    return report


def _compare_leases(expected: dict[int, LeaseTimeToLive], actual: dict[int, LeaseTimeToLive], report: Report) -> None:
    """Each lease alive in the source must be in the target, granted the same TTL."""
    for lease in sorted(expected.values(), key=lambda lease: lease.id):
        found = actual.get(lease.id)
        if lease.ttl < 0:
            continue
        if found is None:
            report.problem(f"lease {lease.id} is missing from the target")
        elif found.granted_ttl != lease.granted_ttl:
            report.problem(
                f"lease {lease.id} was granted {lease.granted_ttl} s in the source, {found.granted_ttl} s in the target"
            )


def _difference(want: KeyValue, have: KeyValue) -> str:
    fields = ", ".join(
        f"{name} {getattr(want, name)!r} in the source, {getattr(have, name)!r} in the target"
        if name != "value"
        else f"values differ ({len(want.value)} bytes in the source, {len(have.value)} in the target)"
        for name in _FIELDS
        if getattr(want, name) != getattr(have, name)
    )
    return f"key {want.key!r} differs: {fields}"
