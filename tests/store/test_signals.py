"""Commit signals: local commits, the database's announcements and polls, to every observer."""

from __future__ import annotations

from typing import Callable

from twisted.internet.defer import ensureDeferred, succeed
from twisted.internet.task import Clock

from k8s_sql.store.signals import CommitSignals


class Channel:
    """A push channel that records its life and hands announcements to the signals."""

    def __init__(self) -> None:
        self.announce: Callable[[int], None] | None = None
        self.stopped = False

    def listen(self, observer: Callable[[int], None]) -> object:
        self.announce = observer
        return succeed(self)

    def stop(self) -> object:
        self.stopped = True
        return succeed(None)


def test_every_observer_hears_every_signal_until_it_unsubscribes() -> None:
    signals = CommitSignals(Clock())
    first: list[int | None] = []
    second: list[int | None] = []
    leave = signals.subscribe(first.append)
    signals.subscribe(second.append)
    signals.committed(5)
    leave()
    signals.committed(6)
    assert first == [5] and second == [5, 6] and len(signals) == 1


def test_a_failing_observer_does_not_cost_the_others_their_signal() -> None:
    signals = CommitSignals(Clock())
    seen: list[int | None] = []
    signals.subscribe(lambda revision: 1 / 0)  # type: ignore[func-returns-value]
    signals.subscribe(seen.append)
    signals.committed(3)
    assert seen == [3]


def test_polls_say_something_may_be_new_every_interval_until_stopped() -> None:
    clock = Clock()
    signals = CommitSignals(clock, poll_interval=2.0)
    seen: list[int | None] = []
    signals.subscribe(seen.append)
    ensureDeferred(signals.start())
    clock.advance(1.9)
    assert seen == []
    clock.advance(0.1)
    clock.advance(2.0)
    assert seen == [None, None]
    ensureDeferred(signals.stop())
    clock.advance(60)
    assert seen == [None, None]


def test_without_an_interval_nothing_polls() -> None:
    clock = Clock()
    signals = CommitSignals(clock, poll_interval=None)
    seen: list[int | None] = []
    signals.subscribe(seen.append)
    ensureDeferred(signals.start())
    clock.advance(3600)
    assert seen == [] and clock.getDelayedCalls() == []


def test_the_push_channel_announces_until_stopped() -> None:
    channel = Channel()
    signals = CommitSignals(Clock(), listen=channel.listen)  # type: ignore[arg-type]
    seen: list[int | None] = []
    signals.subscribe(seen.append)
    ensureDeferred(signals.start())
    assert channel.announce is not None
    channel.announce(9)
    assert seen == [9]
    ensureDeferred(signals.stop())
    assert channel.stopped


class Heard:
    """What each kind of subscriber of ``signals`` heard, with the local and peer unsubscribers."""

    def __init__(self, signals: CommitSignals) -> None:
        self.everything: list[int | None] = []
        self.local: list[int] = []
        self.peer: list[int] = []
        signals.subscribe(self.everything.append)
        self.leave_local = signals.subscribe_local(self.local.append)
        self.leave_peer = signals.subscribe_peer(self.peer.append)


def test_local_commits_reach_local_observers_and_others_do_not() -> None:
    signals = CommitSignals(Clock())
    heard = Heard(signals)
    signals.local(2)
    signals.committed(3)  # from another process: not to be passed on again
    signals.committed(None)
    heard.leave_local()
    signals.local(4)
    assert heard.everything == [2, 3, None, 4] and heard.local == [2] and heard.peer == []


def test_peers_signals_reach_every_observer_and_the_peer_ones_but_not_the_local_ones() -> None:
    signals = CommitSignals(Clock())
    heard = Heard(signals)
    signals.peer(2)
    signals.local(3)
    signals.committed(4)  # from this server's other processes, the database or a poll
    heard.leave_peer()
    signals.peer(5)
    assert heard.everything == [2, 3, 4, 5] and heard.local == [3] and heard.peer == [2]


def test_observers_hear_a_revision_once_whichever_sources_name_it() -> None:
    signals = CommitSignals(Clock())
    heard = Heard(signals)
    signals.peer(2)
    signals.committed(2)  # the database's announcement of the same commit
    signals.local(4)
    signals.local(3)  # an older batch answered late: still passed on, not told again
    signals.committed(None)
    signals.committed(None)
    assert heard.everything == [2, 4, None, None] and heard.local == [4, 3] and heard.peer == [2]
