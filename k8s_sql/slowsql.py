"""Logging database transactions slower than a threshold (``--slow-sql-threshold``)."""

from __future__ import annotations

from twisted.logger import Logger


class SlowTransactionLog:
    """A transaction observer (``Database.observe_transactions``) that logs slow ones.

    @param threshold: seconds; a transaction taking at least this long is logged as a warning.
    """

    log = Logger()

    def __init__(self, threshold: float) -> None:
        if threshold <= 0:
            raise ValueError(f"the slow transaction threshold must be positive, not {threshold!r}")
        self.threshold = threshold

    def __call__(self, writer: bool, name: str, seconds: float, error: BaseException | None) -> None:
        """Log the transaction if it was slow."""
        if seconds >= self.threshold:
            self.log.warn(
                "Slow {role} transaction {name}: {seconds:.3f} s{outcome}",
                role="write" if writer else "read",
                name=name,
                seconds=seconds,
                outcome=f" (failed: {error})" if error is not None else "",
                threshold=self.threshold,
            )
