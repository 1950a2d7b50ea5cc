"""Telling HTTP/2 from HTTP/1.1 on one port: by the first bytes (fed one at a time, as they
may arrive), or by ALPN after a TLS handshake; the chosen protocol then gets the
connection for good."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IHandshakeListener, IProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from k8s_sql.gateway.sniff import HTTP2_PREFACE, ProtocolSwitch

ADDRESS = IPv4Address("TCP", "127.0.0.1", 40000)


class Recorder(Protocol):
    """Records what the transport tells it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.received: list[bytes] = []
        self.made = False
        self.lost: Failure | None = None

    def connectionMade(self) -> None:
        self.made = True

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def connectionLost(self, reason: Failure) -> None:
        self.lost = reason


class RecordingFactory(Factory):
    def __init__(self, name: str) -> None:
        self.name = name
        self.built: list[Recorder] = []

    def buildProtocol(self, addr: Any) -> Recorder:
        protocol = Recorder(self.name)
        self.built.append(protocol)
        return protocol


class ALPNTransport(StringTransport):
    """A transport after a TLS handshake that negotiated ``negotiatedProtocol``."""

    def __init__(self, negotiated: bytes | None) -> None:
        super().__init__()
        self.negotiatedProtocol = negotiated


def connect(transport: StringTransport | None = None) -> tuple[Any, StringTransport, RecordingFactory, RecordingFactory]:
    h2, http1 = RecordingFactory("h2"), RecordingFactory("http1")
    switch = ProtocolSwitch(h2, http1)
    sniffer = switch.buildProtocol(ADDRESS)
    transport = transport or StringTransport()
    sniffer.makeConnection(transport)
    return sniffer, transport, h2, http1


def feed_bytewise(sniffer: Any, data: bytes) -> None:
    for index in range(len(data)):
        sniffer.dataReceived(data[index : index + 1])


def test_the_sniffer_provides_its_interfaces() -> None:
    sniffer, *_ = connect()
    assert verifyObject(IProtocol, sniffer)
    assert verifyObject(IHandshakeListener, sniffer)


def test_the_http2_preface_goes_to_h2_with_every_byte() -> None:
    sniffer, transport, h2, http1 = connect()
    data = HTTP2_PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    feed_bytewise(sniffer, data[: len(HTTP2_PREFACE) - 1])
    assert not h2.built and not http1.built
    feed_bytewise(sniffer, data[len(HTTP2_PREFACE) - 1 :])
    (protocol,) = h2.built
    assert not http1.built
    assert protocol.made and protocol.transport is transport
    assert b"".join(protocol.received) == data


@pytest.mark.parametrize("request_line", [b"GET /version HTTP/1.1\r\n", b"POST /v3/kv/range HTTP/1.1\r\n",
                                          b"PRI / HTTP/1.1\r\n", b"PUT / HTTP/1.1\r\n"])
def test_an_http1_request_goes_to_http1_as_soon_as_it_differs(request_line: bytes) -> None:
    sniffer, transport, h2, http1 = connect()
    feed_bytewise(sniffer, request_line + b"Host: x\r\n\r\n")
    (protocol,) = http1.built
    assert not h2.built
    assert b"".join(protocol.received) == request_line + b"Host: x\r\n\r\n"
    common = next(i for i, (a, b) in enumerate(zip(request_line, HTTP2_PREFACE)) if a != b)
    assert protocol.received[0] == request_line[: common + 1]


def test_after_the_hand_over_the_transport_calls_the_chosen_protocol_itself() -> None:
    sniffer, _, h2, _ = connect()
    sniffer.dataReceived(HTTP2_PREFACE)
    (protocol,) = h2.built
    # What tcp.Connection does with every read: look up dataReceived on its protocol.
    assert sniffer.dataReceived == protocol.dataReceived
    assert sniffer.connectionLost == protocol.connectionLost
    sniffer.dataReceived(b"more")
    sniffer.connectionLost(Failure(ConnectionError("gone")))
    assert protocol.received[-1] == b"more"
    assert protocol.lost is not None


@pytest.mark.parametrize(("negotiated", "chosen"), [(b"h2", "h2"), (b"http/1.1", "http1")])
def test_alpn_decides_at_the_handshake(negotiated: bytes, chosen: str) -> None:
    sniffer, transport, h2, http1 = connect(ALPNTransport(negotiated))
    sniffer.handshakeCompleted()
    built = {"h2": h2, "http1": http1}
    (protocol,) = built[chosen].built
    assert not built["http1" if chosen == "h2" else "h2"].built
    assert protocol.transport is transport and not protocol.received


def test_without_alpn_the_bytes_decide_after_the_handshake() -> None:
    sniffer, _, h2, http1 = connect(ALPNTransport(None))
    sniffer.handshakeCompleted()
    assert not h2.built and not http1.built
    sniffer.dataReceived(HTTP2_PREFACE)
    assert len(h2.built) == 1


def test_http1_connections_are_tracked_until_lost_and_closed_at_shutdown() -> None:
    switch = ProtocolSwitch(RecordingFactory("h2"), http1 := RecordingFactory("http1"))
    sniffers = [switch.buildProtocol(ADDRESS) for _ in range(2)]
    transports = [StringTransport(), StringTransport()]
    for sniffer, transport in zip(sniffers, transports):
        sniffer.makeConnection(transport)
        sniffer.dataReceived(b"GET / HTTP/1.1\r\n")
    assert switch.http1_connections == set(transports)
    sniffers[0].connectionLost(Failure(ConnectionError("gone")))
    assert http1.built[0].lost is not None
    assert switch.http1_connections == {transports[1]}
    switch.close_http1()
    assert transports[1].disconnecting and not transports[0].disconnecting


def test_a_connection_gone_before_a_byte_builds_nothing() -> None:
    sniffer, _, h2, http1 = connect()
    sniffer.connectionLost(Failure(ConnectionError("gone")))
    assert not h2.built and not http1.built


def test_a_factory_that_refuses_closes_the_connection() -> None:
    class Refusing(Factory):
        def buildProtocol(self, addr: Any) -> None:
            return None

    switch = ProtocolSwitch(Refusing(), Refusing())
    sniffer = switch.buildProtocol(ADDRESS)
    transport = StringTransport()
    sniffer.makeConnection(transport)
    sniffer.dataReceived(b"GET")
    assert transport.disconnecting
