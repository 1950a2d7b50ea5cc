"""The outbox keeps order, counts bytes and tells producers when there is room again."""

from __future__ import annotations

from twisted.internet.defer import CancelledError

from k8s_sql.watch.outbox import Outbox


def test_messages_come_out_in_order_and_sizes_are_counted() -> None:
    outbox = Outbox(limit=10)
    outbox.put(b"abc")
    outbox.put(b"defg")
    assert outbox.size == 7 and len(outbox) == 2 and outbox.has_room()
    taken: list[bytes] = []
    outbox.get().addCallback(taken.append)
    outbox.get().addCallback(taken.append)
    assert taken == [b"abc", b"defg"] and outbox.size == 0


def test_a_waiting_taker_gets_the_next_message_directly() -> None:
    outbox = Outbox(limit=10)
    taken: list[bytes] = []
    outbox.get().addCallback(taken.append)
    assert taken == []
    outbox.put(b"x")
    assert taken == [b"x"] and outbox.size == 0


def test_room_runs_out_at_the_limit_and_returns_at_the_resume_mark() -> None:
    outbox = Outbox(limit=10)
    outbox.put(b"12345")
    outbox.put(b"67890")
    outbox.put(b"ab")
    assert not outbox.has_room()
    resumed: list[None] = []
    outbox.room().addCallback(resumed.append)
    outbox.get()
    assert resumed == [] and outbox.size == 7
    outbox.get()
    assert resumed == [None] and outbox.size == 2 and outbox.has_room()
    already: list[None] = []
    outbox.room().addCallback(already.append)
    assert already == [None]


def test_cancelled_waiters_are_forgotten() -> None:
    outbox = Outbox(limit=4, resume=0)
    taker = outbox.get()
    taker.addErrback(lambda reason: reason.trap(CancelledError))
    taker.cancel()
    outbox.put(b"12345")
    assert len(outbox) == 1
    waiter = outbox.room()
    waiter.addErrback(lambda reason: reason.trap(CancelledError))
    waiter.cancel()
    taken: list[bytes] = []
    outbox.get().addCallback(taken.append)
    assert taken == [b"12345"]
