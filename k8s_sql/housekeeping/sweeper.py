"""The periodic revocation of expired leases."""

from __future__ import annotations

from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from k8s_sql.store.errors import Unavailable
from k8s_sql.store.interfaces import ILeaseStore

#: Seconds between sweeps: etcd checks for expired leases every 500 ms.
DEFAULT_INTERVAL = 0.5
#: Leases revoked per sweep at most; with the default interval this is etcd's revocation
#: rate limit of 1,000 leases a second, which keeps a mass expiry from starving writes.
DEFAULT_BATCH = 500


class LeaseSweeper(TimerService):
    """Revokes the leases whose deadline has passed, every ``interval`` seconds.

    Each revocation deletes the lease's keys in one revision (``ILeaseStore.expire_leases``).
    Several servers sharing one database may all sweep: the store revokes each lease exactly
    once.  A sweep never raises, so the loop survives database outages, and the next sweep
    starts only after the previous one finished.

    @param store: where the lease rows live.
    @param clock: the source of ``now``, the same clock the lease service grants and renews by.
    @param interval: seconds between the starts of two sweeps.
    @param batch: the most leases one sweep revokes; a larger backlog drains over the
        following sweeps.
    """

    log = Logger()

    def __init__(
        self, store: ILeaseStore, clock: IReactorTime, interval: float = DEFAULT_INTERVAL, batch: int = DEFAULT_BATCH
    ) -> None:
        if interval <= 0:
            raise ValueError(f"the sweep interval must be positive, not {interval!r}")
        if batch < 1:
            raise ValueError(f"the sweep batch must be at least 1, not {batch!r}")
        super().__init__(interval, self.sweep)
        self.clock = clock
        self.store = store
        self.batch = batch

    def sweep(self) -> Deferred[None]:
        """Revoke up to ``batch`` leases expired by now; fires when done, never fails."""
        return ensureDeferred(self._sweep())

    async def _sweep(self) -> None:
        assert self.clock is not None
        try:
            expired = await self.store.expire_leases(self.clock.seconds(), self.batch)
        except Unavailable:
            return  # the store reports the outage once
        except Exception:
            self.log.failure("Lease expiry failed; retrying in {interval} s", interval=self.step)
            return
        if expired:
            self.log.info("Revoked {count} expired leases", count=len(expired), leases=expired)
