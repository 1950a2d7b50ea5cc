"""The encoded responses of one stream on their way to the call, in order, bounded in bytes.

Each message is handed to the call as soon as the call takes more, that is at once while
the client reads.  Messages the call cannot take yet wait here.  Producers of events ask
``has_room`` before adding and, when the queue is full, stop producing and wait on
``room``: a watch stream then reads what its watchers missed from the log once its client
reads again, instead of buffering without bound.  Small control messages (created,
canceled, progress) are always accepted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure


class Outbox:
    """A FIFO of byte strings pumped into ``send``, with a soft limit on the bytes it holds.

    @param send: hands one message to the call; the Deferred it returns fires once the
        call takes more (``IServerCall.send``).
    @param failed: called with the failure if ``send`` fails; nothing is sent after it.
    @param limit: producers find no room once this many bytes wait.
    @param resume: ``room`` fires once the queue has drained to this many bytes (default
        half the limit), so that producers resume in bulk rather than message by message.
    """

    def __init__(
        self,
        send: Callable[[bytes], Deferred[None]],
        failed: Callable[[Failure], None],
        limit: int,
        resume: int | None = None,
    ) -> None:
        self.limit = limit
        self.resume = limit // 2 if resume is None else resume
        self.size = 0
        self._send = send
        self._failed = failed
        self._messages: deque[bytes] = deque()
        self._room: list[Deferred[None]] = []
        self._sending: Deferred[None] | None = None
        self._pumping = False
        self._closed = False

    def __len__(self) -> int:
        return len(self._messages)

    def has_room(self) -> bool:
        """Whether producers may add more now."""
        return self.size < self.limit

    def room(self) -> Deferred[None]:
        """Fire once the queue has drained to ``resume`` bytes (at once if it has)."""
        waiter: Deferred[None] = Deferred(self._forget)
        if self.size <= self.resume:
            waiter.callback(None)
        else:
            self._room.append(waiter)
        return waiter

    def put(self, message: bytes) -> None:
        """Queue ``message``: the call gets it after everything queued before."""
        if self._closed:
            return
        self._messages.append(message)
        self.size += len(message)
        self._pump()

    def close(self) -> None:
        """Send nothing more; drop what waits and let go of the send in progress."""
        self._closed = True
        self._messages.clear()
        self.size = 0
        sending, self._sending = self._sending, None
        if sending is not None:
            sending.cancel()

    def _pump(self) -> None:
        """Hand messages over while the call takes them; wake producers once drained.

        Messages queued meanwhile (by a send, or by a producer woken here) are handed over
        by this same loop, in order, rather than by a nested one.
        """
        if self._pumping:
            return
        self._pumping = True
        try:
            messages = self._messages
            while not self._closed:
                if messages and self._sending is None:
                    message = messages.popleft()
                    self.size -= len(message)
                    try:
                        sent = self._send(message)
                    except Exception:
                        self._fail(Failure())
                        return
                    if not sent.called:
                        self._sending = sent
                        sent.addCallbacks(self._sent, self._fail)
                    elif isinstance(sent.result, Failure):
                        sent.addErrback(self._fail)
                elif self._room and self.size <= self.resume:
                    waiting, self._room = self._room, []
                    for waiter in waiting:
                        # A producer woken before may have cancelled others (its stream ended).
                        if not waiter.called:
                            waiter.callback(None)
                else:
                    return
        finally:
            self._pumping = False

    def _forget(self, waiter: Deferred[None]) -> None:
        if waiter in self._room:
            self._room.remove(waiter)

    def _sent(self, _: None) -> None:
        self._sending = None
        self._pump()

    def _fail(self, reason: Failure) -> None:
        if not self._closed:
            self.close()
            self._failed(reason)
