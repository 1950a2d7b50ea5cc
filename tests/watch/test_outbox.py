"""The outbox hands messages to the call in order as fast as it takes them, counts what waits
and tells producers when there is room again."""

from __future__ import annotations

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.python.failure import Failure

from k8s_sql.watch.outbox import Outbox


class Call:
    """Takes messages at once while ``reading``; otherwise each send waits for ``read``."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.reading = True
        self.pending: list[Deferred[None]] = []
        self.failures: list[Failure] = []

    def send(self, message: bytes) -> Deferred[None]:
        self.sent.append(message)
        if self.reading:
            return succeed(None)
        self.pending.append(Deferred())
        return self.pending[-1]

    def read(self) -> None:
        """Take the message waiting, and all later ones at once."""
        self.reading = True
        self.pending.pop(0).callback(None)

    def outbox(self, limit: int, resume: int | None = None) -> Outbox:
        return Outbox(self.send, self.failures.append, limit, resume)


def test_messages_go_out_at_once_while_the_call_takes_them() -> None:
    call = Call()
    outbox = call.outbox(limit=10)
    outbox.put(b"abc")
    outbox.put(b"defg")
    assert call.sent == [b"abc", b"defg"] and outbox.size == 0 and len(outbox) == 0


def test_messages_wait_while_the_call_has_no_room_and_keep_their_order() -> None:
    call = Call()
    outbox = call.outbox(limit=10)
    call.reading = False
    outbox.put(b"abc")
    outbox.put(b"defg")
    outbox.put(b"h")
    assert call.sent == [b"abc"] and outbox.size == 5 and len(outbox) == 2
    call.read()
    assert call.sent == [b"abc", b"defg", b"h"] and outbox.size == 0


def test_room_runs_out_at_the_limit_and_returns_at_the_resume_mark() -> None:
    call = Call()
    outbox = call.outbox(limit=10)
    call.reading = False
    for message in (b"0", b"12345", b"67890", b"ab"):
        outbox.put(message)
    assert not outbox.has_room() and outbox.size == 12
    resumed: list[None] = []
    outbox.room().addCallback(resumed.append)
    call.reading = False
    call.pending.pop(0).callback(None)
    assert resumed == [] and outbox.size == 7
    call.reading = False
    call.pending.pop(0).callback(None)
    assert resumed == [None] and outbox.size == 2 and outbox.has_room()
    already: list[None] = []
    outbox.room().addCallback(already.append)
    assert already == [None]


def test_producers_woken_by_room_queue_behind_what_waits() -> None:
    call = Call()
    outbox = call.outbox(limit=4, resume=2)
    call.reading = False
    for message in (b"a", b"bb", b"cc", b"d"):
        outbox.put(message)
    outbox.room().addCallback(lambda _: outbox.put(b"woken"))
    call.read()
    assert call.sent == [b"a", b"bb", b"cc", b"d", b"woken"]


def test_cancelled_room_waiters_are_forgotten() -> None:
    call = Call()
    outbox = call.outbox(limit=4, resume=0)
    call.reading = False
    outbox.put(b"1")
    outbox.put(b"2345")
    first, second = outbox.room(), outbox.room()
    second.addErrback(lambda reason: reason.trap(CancelledError))
    first.addCallback(lambda _: second.cancel())
    lone = outbox.room()
    lone.addErrback(lambda reason: reason.trap(CancelledError))
    lone.cancel()
    call.read()
    assert first.called and second.called and call.failures == []


def test_a_failing_send_is_reported_once_and_ends_the_sending() -> None:
    call = Call()
    outbox = call.outbox(limit=10)
    call.reading = False
    outbox.put(b"a")
    outbox.put(b"b")
    call.pending.pop(0).errback(RuntimeError("gone"))
    assert [failure.check(RuntimeError) for failure in call.failures] == [RuntimeError]
    outbox.put(b"c")
    assert call.sent == [b"a"]


def test_a_send_raising_is_reported() -> None:
    failures: list[Failure] = []

    def send(message: bytes) -> Deferred[None]:
        raise CancelledError("the call has ended")

    outbox = Outbox(send, failures.append, limit=10)
    outbox.put(b"a")
    outbox.put(b"b")
    assert [failure.check(CancelledError) for failure in failures] == [CancelledError]


def test_close_drops_what_waits_and_lets_go_of_the_send_in_progress() -> None:
    call = Call()
    outbox = call.outbox(limit=10)
    call.reading = False
    outbox.put(b"a")
    outbox.put(b"b")
    in_progress = call.pending[0]
    outbox.close()
    assert in_progress.called and outbox.size == 0 and len(outbox) == 0
    outbox.put(b"c")
    assert call.sent == [b"a"] and call.failures == []
