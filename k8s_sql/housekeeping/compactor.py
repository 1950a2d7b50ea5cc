"""Auto-compaction, as etcd's ``--auto-compaction-mode`` and ``--auto-compaction-retention``.

Kubernetes compacts by itself (kube-apiserver, every 5 minutes by default), so this is off
by default; it is for clusters whose apiservers do not, or for other etcd clients.

* ``periodic``: keep the history of the last *retention* (``1h``, ``30m``, or a whole
  number of hours).  As etcd does, the current revision is sampled every tenth of
  min(retention, 1 h); the first compaction comes one retention after start, later ones
  every min(retention, 1 h), each at the revision sampled one retention earlier.
* ``revision``: keep the last *retention* revisions: every 5 minutes, compact at the
  current revision minus the retention.

Each compaction is logical at once, then physical in bounded batches (see
``k8s_sql.store.compaction``), so it never holds the database for long; the next one
waits until that has finished.  Several servers sharing a database may all compact:
the store refuses a compaction at or below the last one (``Compacted``), which the
compactor takes as done, so concurrent compactions are harmless.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from k8s_sql.durations import format_duration, parse_duration
from k8s_sql.store.errors import Compacted, Unavailable
from k8s_sql.store.interfaces import IStore

#: The values of ``--auto-compaction-mode``.
MODES = ("periodic", "revision")
#: Periodic compaction runs at least this often (seconds), whatever the retention.
MAX_COMPACT_INTERVAL = 3600.0
#: Samples of the revision per compaction interval, as etcd takes.
SAMPLES_PER_INTERVAL = 10
#: Seconds between checks in revision mode, as etcd's.
REVISION_CHECK_INTERVAL = 300.0


@dataclass(frozen=True)
class PeriodicRetention:
    """Keep ``seconds`` of history."""

    seconds: float

    @property
    def compact_interval(self) -> float:
        """Seconds between compactions after the first."""
        return min(self.seconds, MAX_COMPACT_INTERVAL)

    @property
    def check_interval(self) -> float:
        """Seconds between samples of the current revision."""
        return self.compact_interval / SAMPLES_PER_INTERVAL

    def __str__(self) -> str:
        return f"periodic, retention {format_duration(self.seconds)}"


@dataclass(frozen=True)
class RevisionRetention:
    """Keep the last ``revisions`` revisions."""

    revisions: int
    check_interval: float = REVISION_CHECK_INTERVAL

    def __str__(self) -> str:
        return f"revision, retention {self.revisions} revisions"


Retention = PeriodicRetention | RevisionRetention


def retention_policy(mode: str, retention: str) -> Retention | None:
    """The policy etcd's pair of flags describes; ``None`` when ``retention`` is 0 (off).

    Raises ``ValueError`` for an unknown mode or a retention the mode cannot use.
    """
    if mode not in MODES:
        raise ValueError(f"unknown auto-compaction mode {mode!r}: use periodic or revision")
    text = retention.strip()
    if mode == "revision":
        if not text.isdigit():
            raise ValueError(f"revision auto-compaction retention must be a number of revisions, not {retention!r}")
        return RevisionRetention(int(text)) if int(text) else None
    try:
        seconds = int(text) * 3600.0 if text.isdigit() else parse_duration(text, unit="h")
    except ValueError:
        raise ValueError(
            f"periodic auto-compaction retention must be a duration (e.g. 30m, 1h) or hours, not {retention!r}"
        ) from None
    return PeriodicRetention(seconds) if seconds else None


class AutoCompactor(Service):
    """Compacts ``store`` by ``policy``, on ``clock``.

    @param store: the store to compact (its ``current_revision`` and ``compact``).
    @param clock: times the checks.
    @param policy: what to keep.
    """

    log = Logger()

    def __init__(self, store: IStore, clock: IReactorTime, policy: Retention) -> None:
        self.store = store
        self.clock = clock
        self.policy = policy
        #: The last revision this compactor compacted at (or found compacted already).
        self.compacted = 0
        self._loop: LoopingCall | None = None
        self._check: Deferred[None] | None = None
        # Periodic mode: (time, revision) samples, oldest first, and when the next compaction is due.
        self._samples: deque[tuple[float, int]] = deque()
        self._due = 0.0

    def startService(self) -> None:
        """Start checking: periodic mode samples now, revision mode first checks one interval later."""
        super().startService()
        if isinstance(self.policy, PeriodicRetention):
            self._due = self.clock.seconds() + self.policy.seconds
        self._loop = LoopingCall(self._run_check)
        self._loop.clock = self.clock
        self._loop.start(self.policy.check_interval, now=isinstance(self.policy, PeriodicRetention))
        self.log.info("Auto-compaction on: {policy}", policy=str(self.policy))

    def stopService(self) -> None:
        """Stop checking; a compaction in progress is abandoned between two batches."""
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._check is not None:
            self._check.cancel()

    def _run_check(self) -> Deferred[None]:
        """One check; the loop waits for it, so checks never overlap."""
        self._check = ensureDeferred(self.check())
        self._check.addBoth(self._check_ended)
        return self._check

    def _check_ended(self, result: object) -> None:
        self._check = None

    async def check(self) -> None:
        """Compact if the policy says it is time; never fails (failures are logged)."""
        try:
            target = await self._target()
            if target is not None and target > self.compacted:
                await self._compact(target)
                if isinstance(self.policy, PeriodicRetention):
                    self._due = self.clock.seconds() + self.policy.compact_interval
        except (CancelledError, Unavailable):
            pass  # the store reports an outage once
        except Exception:
            self.log.failure(
                "Auto-compaction failed; trying again in {interval}",
                interval=format_duration(self.policy.check_interval),
            )

    async def _target(self) -> int | None:
        """The revision to compact at now, if any."""
        current = await self.store.current_revision()
        policy = self.policy
        if isinstance(policy, RevisionRetention):
            return current - policy.revisions if current > policy.revisions else None
        now = self.clock.seconds()
        samples = self._samples
        samples.append((now, current))
        old_enough = now - policy.seconds
        # Forget samples older than the newest one old enough to compact at.
        while len(samples) > 1 and samples[1][0] <= old_enough:
            samples.popleft()
        if now < self._due or samples[0][0] > old_enough:
            return None
        return samples[0][1]

    async def _compact(self, revision: int) -> None:
        self.log.info("Auto-compaction at revision {revision} ({policy})", revision=revision, policy=str(self.policy))
        try:
            await self.store.compact(revision, True)
        except Compacted as compacted:
            self.log.info(
                "Auto-compaction at revision {revision} not needed: compacted at {compact_revision} already",
                revision=revision,
                compact_revision=compacted.compact_revision,
            )
            self.compacted = max(revision, compacted.compact_revision)
            return
        self.compacted = revision
        self.log.info("Auto-compaction at revision {revision} finished", revision=revision)
