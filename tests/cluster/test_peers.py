"""The peer channel's two sides, over in-memory transports on a ``Clock``.

``PeerSignals`` links to the live peers and sends them this store's commits, coalesced;
``SignalListener`` admits authenticated live members and passes their signals on, and
refuses the rest with a log line.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError, ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from k8s_sql.cluster.peers import FIRST_RETRY, HELLO_TIMEOUT, MAX_RETRY, PeerSignals, SignalListener
from k8s_sql.cluster.wire import ADMITTED, Answer, Hello, SendingEnd, Signal
from k8s_sql.store.errors import Unavailable
from tests.cluster.doubles import SECRET, Endpoints, Store, member

OWN = 1


def sending(clock: Clock) -> tuple[Store, Endpoints, PeerSignals]:
    store, endpoints = Store(), Endpoints()
    signals = PeerSignals(store, clock, OWN, "server-1", endpoints)  # type: ignore[arg-type]
    signals.startService()
    return store, endpoints, signals


def messages(events: Any) -> list[str]:
    return [event["log_format"].format(**event) for event in events]


def test_links_go_to_every_live_process_of_another_server_with_a_peer_url() -> None:
    clock = Clock()
    _, endpoints, signals = sending(clock)
    assert verifyObject(IService, signals)
    signals.members_changed([
        member(OWN, "http://me:1"),
        member(5, "http://me:2", name="server-1"),  # a worker process of this server, or an earlier run
        member(2, "http://b:1"),
        member(3),  # no peer port
    ])
    assert [attempt.url for attempt in endpoints.attempts] == ["http://b:1"]
    endpoints.attempts[0].accept()
    signals.members_changed([member(OWN, "http://me:1"), member(4, "unix:///run/d.sock")])
    assert endpoints.attempts[0].transport.disconnecting or endpoints.attempts[0].transport.disconnected
    assert list(signals.links) == [4] and endpoints.attempts[1].url == "unix:///run/d.sock"


def test_commits_of_one_reactor_turn_become_one_signal_of_the_newest_revision() -> None:
    clock = Clock()
    store, endpoints, signals = sending(clock)
    signals.members_changed([member(2, "http://b:1")])
    attempt = endpoints.attempts[0]
    store.commit(5)  # before the link is made: its newest revision goes first, once it is
    attempt.accept()
    assert attempt.events == [Hello(OWN), Signal(5)]
    for revision in (6, 8, 7):
        store.commit(revision)
    assert attempt.read() == []
    clock.advance(0)
    assert attempt.read() == [Signal(8)]
    store.commit(8)  # nothing new for this peer
    clock.advance(0)
    assert attempt.read() == []


def test_a_lost_peer_is_connected_again_later_and_hears_the_newest_revision() -> None:
    clock = Clock()
    store, endpoints, signals = sending(clock)
    signals.members_changed([member(2, "http://b:1", "http://b:2")])
    endpoints.attempts[0].connecting.errback(Failure(ConnectionRefusedError()))
    clock.advance(FIRST_RETRY)
    assert [attempt.url for attempt in endpoints.attempts] == ["http://b:1", "http://b:2"]
    endpoints.attempts[1].connecting.errback(Failure(ConnectionRefusedError()))
    clock.advance(FIRST_RETRY)
    assert len(endpoints.attempts) == 2  # the delay doubles
    clock.advance(FIRST_RETRY)
    second = endpoints.attempts[2]
    assert second.url == "http://b:1"
    store.commit(3)
    clock.advance(0)
    with capturedLogs() as events:
        second.accept()
        second.protocol.connectionLost(Failure(ConnectionDone()))
    assert messages(events) == [
        "sending commit signals to server-2 (2) at http://b:1",
        "lost the connection to server-2 at http://b:1: Connection was closed cleanly.",
    ]
    assert second.events == [Hello(OWN), Signal(3)]
    clock.advance(FIRST_RETRY)  # admitted, the delay started again from the first
    third = endpoints.attempts[3]
    third.accept()
    assert third.events == [Hello(OWN), Signal(3)]


def test_retries_slow_down_to_the_longest_delay_and_end_when_the_peer_goes() -> None:
    clock = Clock()
    _, endpoints, signals = sending(clock)
    signals.members_changed([member(2, "http://b:1")])
    for _ in range(12):
        endpoints.attempts[-1].connecting.errback(Failure(ConnectionRefusedError()))
        clock.advance(MAX_RETRY)
    assert len(endpoints.attempts) == 13
    signals.members_changed([])
    endpoints.attempts[-1].connecting.errback(Failure(ConnectionRefusedError()))
    clock.advance(MAX_RETRY * 10)
    assert len(endpoints.attempts) == 13 and clock.getDelayedCalls() == []


def test_stopping_closes_every_link_and_hears_no_more_commits() -> None:
    clock = Clock()
    store, endpoints, signals = sending(clock)
    signals.members_changed([member(2, "http://b:1")])
    endpoints.attempts[0].accept()
    signals.stopService()
    assert endpoints.attempts[0].transport.disconnecting and store.local == []
    clock.advance(MAX_RETRY * 10)
    assert len(endpoints.attempts) == 1


class Peers:
    """``lookup(instance)`` over a fixed set of live members; held lookups wait for ``answer``."""

    def __init__(self, *instances: int, hold: bool = False) -> None:
        self.instances = instances
        self.hold = hold
        self.held: list[Deferred[None]] = []

    async def lookup(self, instance: int) -> Any:
        if self.hold:
            waiting: Deferred[None] = Deferred()
            self.held.append(waiting)
            await waiting
        return member(instance, name="b") if instance in self.instances else None

    def answer(self) -> None:
        self.held.pop(0).callback(None)


def receiving(peers: Peers) -> tuple[Clock, list[int], Any, StringTransport]:
    clock, committed = Clock(), []
    listener = SignalListener(Store(), clock, peers.lookup, committed.append)  # type: ignore[arg-type]
    protocol = listener.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    protocol.makeConnection(transport)
    return clock, committed, protocol, transport


def hello(transport: StringTransport, secret: bytes = SECRET, instance: int = 2) -> tuple[SendingEnd, bytes]:
    """A sender's end answering the challenge written to ``transport``."""
    end = SendingEnd(secret, instance, b"n" * 16)
    [answer] = end.receive(transport.value())
    transport.clear()
    assert isinstance(answer, Answer)
    return end, answer.hello


def test_a_live_member_is_admitted_and_its_signals_go_to_the_commit_signals() -> None:
    peers = Peers(2, hold=True)
    _, committed, protocol, transport = receiving(peers)
    end, greeting = hello(transport)
    protocol.dataReceived(greeting + end.signal(4) + end.signal(6))
    assert committed == [] and transport.value() == b""  # the registry is being read
    with capturedLogs() as events:
        peers.answer()
    assert transport.value() == ADMITTED
    assert committed == [6]  # those sent before admission: the newest
    protocol.dataReceived(end.signal(7))
    assert committed == [6, 7]
    assert messages(events) == ["taking commit signals from b (2) at 127.0.0.1:40000"]


def test_a_sender_without_the_secret_is_refused_with_a_log_line() -> None:
    _, committed, protocol, transport = receiving(Peers(2))
    end, greeting = hello(transport, secret=b"x" * 32)
    with capturedLogs() as events:
        protocol.dataReceived(greeting + end.signal(4))
    assert transport.disconnecting and committed == []
    assert messages(events) == [
        "refused commit signals from 127.0.0.1:40000: hello not signed with this database's peer secret"
    ]


def test_a_sender_that_is_no_live_member_is_refused_with_a_log_line() -> None:
    _, committed, protocol, transport = receiving(Peers(2))
    end, greeting = hello(transport, instance=9)
    with capturedLogs() as events:
        protocol.dataReceived(greeting + end.signal(4))
    assert transport.disconnecting and committed == [] and transport.value() == b""
    assert messages(events) == ["refused commit signals from 127.0.0.1:40000: instance 9 is not a live member"]


def test_a_forged_signal_ends_the_connection_with_a_log_line() -> None:
    _, committed, protocol, transport = receiving(Peers(2))
    end, greeting = hello(transport)
    protocol.dataReceived(greeting + end.signal(4))
    forged = bytearray(end.signal(5))
    forged[7] ^= 1
    with capturedLogs() as events:
        protocol.dataReceived(bytes(forged))
    assert committed == [4] and transport.disconnecting
    assert messages(events) == ["refused commit signals from 127.0.0.1:40000: signal 1 of the connection is forged"]


def test_a_silent_connection_is_closed_after_the_hello_timeout() -> None:
    clock, _, protocol, transport = receiving(Peers(2))
    clock.advance(HELLO_TIMEOUT - 0.1)
    assert not transport.disconnecting
    with capturedLogs() as events:
        clock.advance(0.1)
    assert transport.disconnecting
    assert messages(events) == ["refused commit signals from 127.0.0.1:40000: no hello in time"]


def test_a_sender_is_refused_while_the_registry_cannot_be_read() -> None:
    async def unreadable(instance: int) -> Any:
        raise Unavailable("database db is unavailable")

    clock, committed = Clock(), []
    listener = SignalListener(Store(), clock, unreadable, committed.append)  # type: ignore[arg-type]
    protocol = listener.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    protocol.makeConnection(transport)
    end, greeting = hello(transport)
    with capturedLogs() as events:
        protocol.dataReceived(greeting + end.signal(4))
    assert transport.disconnecting and committed == []
    assert messages(events) == [
        "refused commit signals from 127.0.0.1:40000: cannot read the member registry: database db is unavailable"
    ]
