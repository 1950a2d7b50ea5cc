"""One port, two protocols: HTTP/2 (gRPC) or HTTP/1.1 (the JSON gateway), per connection.

A connection is HTTP/2 when TLS negotiated ALPN ``h2``, or, without ALPN, when its first
bytes are the HTTP/2 client preface; it is HTTP/1.1 when ALPN chose ``http/1.1`` or as
soon as its first bytes differ from the preface (an HTTP/1.1 request line never starts
with ``PRI * HTTP/2.0``).  Once decided, the connection is handed over for good: the
chosen protocol's own ``dataReceived`` and ``connectionLost`` shadow the sniffer's, so
the transport calls them directly and HTTP/2 connections pay nothing after their first
bytes (the way Twisted's own websocket upgrade hands an HTTP channel over).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IAddress, IHandshakeListener, IProtocol, IProtocolFactory, ITransport
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

#: What an HTTP/2 client sends first (RFC 9113, 3.4).
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class ProtocolSwitch(Factory):
    """Builds, for each connection, the protocol of ``h2`` or of ``http1``, as its client speaks.

    @param h2: the factory of HTTP/2 connections.
    @param http1: the factory of HTTP/1.x connections.
    """

    noisy = False

    def __init__(self, h2: IProtocolFactory, http1: IProtocolFactory) -> None:
        self.h2 = h2
        self.http1 = http1
        #: The transports of the HTTP/1.x connections open, for closing at shutdown.
        self.http1_connections: set[ITransport] = set()

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        """A sniffer, until the connection's protocol is known."""
        assert addr is not None
        return _Sniffer(self, addr)

    def close_http1(self) -> None:
        """Close the HTTP/1.x connections (once their requests are answered)."""
        for transport in list(self.http1_connections):
            transport.loseConnection()


@implementer(IHandshakeListener)
class _Sniffer(Protocol):
    """A connection whose protocol is not known yet."""

    def __init__(self, switch: ProtocolSwitch, addr: IAddress) -> None:
        self._switch = switch
        self._addr = addr
        self._head = b""

    def handshakeCompleted(self) -> None:
        """TLS is up: follow ALPN if it chose (without ALPN, the first bytes decide)."""
        negotiated = getattr(self.transport, "negotiatedProtocol", None)
        if negotiated == b"h2":
            self._hand_over(self._switch.h2, http1=False)
        elif negotiated is not None:
            self._hand_over(self._switch.http1, http1=True)

    def dataReceived(self, data: bytes) -> None:
        """Compare the first bytes with the HTTP/2 preface until they decide."""
        head = self._head = self._head + data
        seen = min(len(head), len(HTTP2_PREFACE))
        if head[:seen] != HTTP2_PREFACE[:seen]:
            self._hand_over(self._switch.http1, http1=True)
        elif seen == len(HTTP2_PREFACE):
            self._hand_over(self._switch.h2, http1=False)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Gone before it said what it speaks: nothing to clean up."""

    def _hand_over(self, factory: IProtocolFactory, *, http1: bool) -> None:
        transport = self.transport
        assert transport is not None
        protocol = factory.buildProtocol(self._addr)
        if protocol is None:
            transport.loseConnection()
            return
        # Instance attributes shadow this class's methods: from now on the transport
        # calls the chosen protocol directly.
        self.dataReceived = protocol.dataReceived  # type: ignore[method-assign]
        if http1:
            self._switch.http1_connections.add(transport)
            self.connectionLost = _forgetting(self._switch, transport, protocol)  # type: ignore[method-assign]
        else:
            self.connectionLost = protocol.connectionLost  # type: ignore[method-assign,assignment]
        protocol.makeConnection(transport)
        head, self._head = self._head, b""
        if head:
            protocol.dataReceived(head)


def _forgetting(switch: ProtocolSwitch, transport: ITransport, protocol: IProtocol) -> Any:
    """``connectionLost`` for an HTTP/1.x connection: forget it, then tell its protocol."""

    def connection_lost(reason: Failure = connectionDone) -> None:
        switch.http1_connections.discard(transport)
        protocol.connectionLost(reason)

    return connection_lost
