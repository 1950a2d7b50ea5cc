"""What a robustness run records: every operation with its call and return times and its
result (or an unknown outcome), and every watch stream's responses.

Times are ``time.monotonic()`` seconds of the recording process.  Requests and responses
are the etcd protobuf messages themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: gRPC codes after which a write may or may not have been applied.
UNKNOWN_OUTCOME = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "UNKNOWN", "CANCELLED", "INTERNAL"})


@dataclass
class Operation:
    """One unary call: ``method`` is the KV or Lease method name (``Put``, ``Txn``...)."""

    client: int
    method: str
    request: Any
    call: float
    #: When the answer (or error) came; None if it never did.
    returned: float | None = None
    response: Any = None
    #: The gRPC code name of a failed call.
    error: str | None = None

    @property
    def unknown(self) -> bool:
        """Whether the call may or may not have taken effect."""
        return self.returned is None or self.error in UNKNOWN_OUTCOME


@dataclass
class WatchStream:
    """One Watch creation and what came back on it, until the stream ended or the run did."""

    client: int
    request: Any  # WatchCreateRequest
    #: (time, WatchResponse) in arrival order.
    responses: list[tuple[float, Any]] = field(default_factory=list)
    #: Progress requests sent on the stream (their times).
    progress_requests: list[float] = field(default_factory=list)
    #: Whether this is the run's log watch (every key, from revision 1).
    log: bool = False


@dataclass
class History:
    """A run's record."""

    operations: list[Operation] = field(default_factory=list)
    watches: list[WatchStream] = field(default_factory=list)
    #: The final read of every key, after the faults healed (a RangeResponse).
    final: Any = None
