"""The control channel: notices, requests and replies, and what happens when it closes."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from k8s_sql.workers.channel import ChannelClosed, ControlChannel


def pair(handlers: dict[str, Any], other: dict[str, Any]) -> tuple[ControlChannel, ControlChannel, Any]:
    """Two channels; ``pump()`` carries what each wrote to the other."""
    left, right = ControlChannel(handlers), ControlChannel(other)
    left_wire, right_wire = StringTransport(), StringTransport()
    left.makeConnection(left_wire)
    right.makeConnection(right_wire)

    def pump() -> None:
        while left_wire.value() or right_wire.value():
            to_right, to_left = left_wire.value(), right_wire.value()
            left_wire.clear()
            right_wire.clear()
            right.dataReceived(to_right)
            left.dataReceived(to_left)

    return left, right, pump


def test_notices_reach_their_handler() -> None:
    seen: list[dict[str, Any]] = []
    left, _, pump = pair({}, {"commit": seen.append})
    left.send("commit", revision=7)
    pump()
    assert seen == [{"type": "commit", "revision": 7}]


def test_a_request_fires_with_the_reply_even_a_late_one() -> None:
    later: Deferred[str] = Deferred()
    left, _, pump = pair({}, {"metrics": lambda message: succeed("text"), "health": lambda message: later})
    replies: list[Any] = []
    left.request("metrics").addCallback(replies.append)
    left.request("health").addCallback(replies.append)
    pump()
    assert replies == ["text"]
    later.callback(None)
    pump()
    assert replies == ["text", None]


def test_coroutine_handlers_are_awaited() -> None:
    async def health(message: dict[str, Any]) -> str:
        return "the database failed"

    left, _, pump = pair({}, {"health": health})
    replies: list[Any] = []
    left.request("health").addCallback(replies.append)
    pump()
    assert replies == ["the database failed"]


def test_closing_fails_the_requests_waiting_and_tells_the_owner() -> None:
    lost: list[bool] = []
    channel = ControlChannel({}, lost=lambda: lost.append(True))
    channel.makeConnection(StringTransport())
    waiting = channel.request("health")
    failures: list[Failure] = []
    waiting.addErrback(failures.append)
    channel.connectionLost(Failure(ConnectionError("gone")))
    assert failures[0].check(ChannelClosed) and lost == [True]
    channel.send("commit", revision=1)  # dropped, not an error


def test_unreadable_and_unknown_messages_are_dropped() -> None:
    seen: list[Any] = []
    channel = ControlChannel({"commit": seen.append})
    channel.makeConnection(StringTransport())
    channel.dataReceived(b"not json\n{\"no\": \"type\"}\n{\"type\": \"nonsense\"}\n{\"type\": \"commit\"}\n")
    assert seen == [{"type": "commit"}]
