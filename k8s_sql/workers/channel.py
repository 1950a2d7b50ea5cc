"""The control channel between the supervisor and a worker: JSON messages, one per line.

Messages are objects with a ``type``.  Either side may send a request (``id`` set) that
the other answers with a message of the same ``id`` and type ``reply``; everything else is
a notice.  Used over a UNIX stream socket pair the supervisor makes for each worker.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

#: ``handler(message) -> reply`` (or a Deferred or coroutine of it); ``None`` for notices.
Handler = Callable[[dict[str, Any]], Any]

#: The longest message accepted: a worker's metrics fit many times over.
MAX_MESSAGE = 64 * 1024 * 1024


class ChannelClosed(Exception):
    """The other end went away before answering."""


class ControlChannel(LineOnlyReceiver):
    """One end of a control channel.

    @param handlers: what to do with each message type received; a request's reply is
        what its handler returns.
    @param lost: called once the channel is closed.
    """

    log = Logger()
    delimiter = b"\n"
    MAX_LENGTH = MAX_MESSAGE

    def __init__(self, handlers: dict[str, Handler], lost: Callable[[], None] | None = None) -> None:
        self.handlers = handlers
        self._lost = lost
        self._ids = itertools.count(1)
        self._waiting: dict[int, Deferred[Any]] = {}
        self.open = False

    def connectionMade(self) -> None:
        """The channel is usable."""
        self.open = True

    def send(self, kind: str, **fields: Any) -> None:
        """Send a notice (dropped if the channel is closed)."""
        if self.open:
            self.sendLine(json.dumps({"type": kind, **fields}).encode())

    def request(self, kind: str, **fields: Any) -> Deferred[Any]:
        """Send a request; fires with the other end's reply, or fails with ``ChannelClosed``."""
        if not self.open:
            raise ChannelClosed()
        ident = next(self._ids)
        answer: Deferred[Any] = Deferred(lambda _: self._forget(ident))
        self._waiting[ident] = answer
        self.sendLine(json.dumps({"type": kind, "id": ident, **fields}).encode())
        return answer

    def _forget(self, ident: int) -> None:
        self._waiting.pop(ident, None)

    def lineReceived(self, line: bytes) -> None:
        """Dispatch one message."""
        try:
            message = json.loads(line)
            kind = message["type"]
        except (ValueError, KeyError, TypeError):
            self.log.error("Unreadable control message: {line!r}", line=line[:200])
            return
        if kind == "reply":
            waiting = self._waiting.pop(message.get("id"), None)
            if waiting is not None:
                waiting.callback(message.get("value"))
            return
        handler = self.handlers.get(kind)
        if handler is None:
            self.log.error("Unknown control message {kind!r}", kind=kind)
            return
        answer = maybeDeferred(handler, message)
        if "id" in message:
            answer.addCallback(lambda value: self.send("reply", id=message["id"], value=value))
        answer.addErrback(self._handler_failed, kind)

    def lineLengthExceeded(self, line: bytes) -> None:
        """Refuse a message over ``MAX_LENGTH``: the channel cannot be trusted any more."""
        self.log.error("Control message too long ({size} bytes): closing the channel", size=len(line))
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        """Fail every request still waiting; tell whoever cares."""
        self.open = False
        waiting, self._waiting = self._waiting, {}
        for answer in waiting.values():
            answer.errback(ChannelClosed())
        if self._lost is not None:
            self._lost()

    def _handler_failed(self, failure: Failure, kind: str) -> None:
        self.log.failure("Handling the control message {kind!r} failed", failure, kind=kind)
