"""The queue of encoded responses waiting to go out on one stream, bounded in bytes.

Producers of events ask ``has_room`` before adding and, when the queue is full, stop
producing and wait on ``room``: a watch stream then reads what its watchers missed from the
log once its client reads again, instead of buffering without bound.  Small control
messages (created, canceled, progress) are always accepted.  One sender takes messages
with ``get`` and hands them to the transport at the pace the client reads.
"""

from __future__ import annotations

from collections import deque

from twisted.internet.defer import Deferred


class Outbox:
    """A FIFO of byte strings with a soft limit on the bytes it holds.

    @param limit: producers find no room once this many bytes are queued.
    @param resume: ``room`` fires once the queue has drained to this many bytes (default
        half the limit), so that producers resume in bulk rather than message by message.
    """

    def __init__(self, limit: int, resume: int | None = None) -> None:
        self.limit = limit
        self.resume = limit // 2 if resume is None else resume
        self.size = 0
        self._messages: deque[bytes] = deque()
        self._taker: Deferred[bytes] | None = None
        self._room: list[Deferred[None]] = []

    def __len__(self) -> int:
        return len(self._messages)

    def has_room(self) -> bool:
        """Whether producers may add more now."""
        return self.size < self.limit

    def room(self) -> Deferred[None]:
        """Fire once the queue has drained to ``resume`` bytes (at once if it has)."""
        waiter: Deferred[None] = Deferred(lambda cancelled: self._room.remove(cancelled))
        if self.size <= self.resume:
            waiter.callback(None)
        else:
            self._room.append(waiter)
        return waiter

    def put(self, message: bytes) -> None:
        """Queue ``message``; the sender gets it after everything queued before."""
        taker, self._taker = self._taker, None
        if taker is not None:
            taker.callback(message)
            return
        self._messages.append(message)
        self.size += len(message)

    def get(self) -> Deferred[bytes]:
        """Fire with the oldest message, as soon as there is one (one taker at a time)."""
        assert self._taker is None, "one sender at a time"
        if not self._messages:
            self._taker = Deferred(self._forget_taker)
            return self._taker
        message = self._messages.popleft()
        self.size -= len(message)
        taken: Deferred[bytes] = Deferred()
        taken.callback(message)
        if self.size <= self.resume and self._room:
            waiting, self._room = self._room, []
            for waiter in waiting:
                waiter.callback(None)
        return taken

    def _forget_taker(self, cancelled: Deferred[bytes]) -> None:
        if self._taker is cancelled:
            self._taker = None
