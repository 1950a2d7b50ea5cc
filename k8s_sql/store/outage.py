"""One warning when the database stops answering, one line when it answers again."""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger


class OutageLog:
    """Reports a database outage once, however many requests fail during it.

    ``failed`` is called for each transaction that failed because the database is unavailable,
    ``answered`` for each that got an answer; ``clock`` times the outage.
    """

    log = Logger()

    def __init__(self, name: str, clock: IReactorTime) -> None:
        self.name = name
        self.clock = clock
        #: When the current outage began (reactor time), or None while the database answers.
        self.since: float | None = None
        #: Transactions failed during the current outage.
        self.failures = 0
        #: Outages seen since start.
        self.outages = 0

    def failed(self, error: BaseException) -> None:
        """A request failed with the database unavailable."""
        self.failures += 1
        if self.since is None:
            self.since = self.clock.seconds()
            self.outages += 1
            self.log.warn(
                "database {database} is unavailable ({error}); requests fail with Unavailable until it answers again",
                database=self.name,
                error=error,
            )

    def answered(self) -> None:
        """A request succeeded."""
        if self.since is not None:
            self.log.info(
                "database {database} answers again after {seconds:.1f} s; {failures} transactions failed meanwhile",
                database=self.name,
                seconds=self.clock.seconds() - self.since,
                failures=self.failures,
            )
            self.since = None
            self.failures = 0
