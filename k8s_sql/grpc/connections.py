"""A cap on the connections one listening endpoint serves at once.

Each connection holds a file descriptor, buffers and, once it speaks, calls; a client
opening connections without end would exhaust the descriptors the database connections
need too.  ``LimitedEndpoint`` wraps an endpoint so that it serves at most ``limit``
connections at once: one more is closed as soon as it is accepted (before any TLS
handshake or HTTP/2 preface), logged at most once per ``log_interval`` with how many
were closed since, and reported to the abuse observer (``max_connections``).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IHandshakeListener,
    IListeningPort,
    IProtocolFactory,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from zope.interface import implementer

from k8s_sql.grpc.abuse import MAX_CONNECTIONS

#: Seconds between two log lines about connections closed over the limit.
LOG_INTERVAL = 10.0


@implementer(IHandshakeListener)
class _Counted(ProtocolWrapper):
    """A connection within the limit: counted while it lives (``WrappingFactory.protocols``)."""

    def handshakeCompleted(self) -> None:
        """TLS is up: tell the wrapped protocol, which may choose by ALPN."""
        listener = IHandshakeListener(self.wrappedProtocol, None)
        if listener is not None:
            listener.handshakeCompleted()


class _Refused(Protocol):
    """A connection over the limit: dropped as soon as it is made."""

    def connectionMade(self) -> None:
        """Drop the connection, writing nothing."""
        assert self.transport is not None
        self.transport.abortConnection()  # type: ignore[attr-defined]


class ConnectionLimit(WrappingFactory):
    """``wrapped``'s connections, at most ``limit`` at once; the others are dropped.

    @param wrapped: the factory of the connections served.
    @param limit: how many connections may be open at once.
    @param clock: the time of the log lines.
    @param description: the endpoint's description, for the log.
    @param observer: called with ``"max_connections"`` for each connection dropped.
    """

    protocol = _Counted
    noisy = False
    log = Logger()

    def __init__(
        self,
        wrapped: IProtocolFactory,
        limit: int,
        clock: IReactorTime,
        description: str = "",
        observer: Callable[[str], None] | None = None,
        log_interval: float = LOG_INTERVAL,
    ) -> None:
        super().__init__(wrapped)
        self.limit = limit
        self.clock = clock
        self.description = description
        self.observer = observer
        self.log_interval = log_interval
        self._unlogged = 0
        self._logged_at: float | None = None

    @property
    def open_connections(self) -> int:
        """How many connections are open now."""
        return len(self.protocols)

    def buildProtocol(self, addr: IAddress) -> Protocol | None:  # type: ignore[override]
        """A counted connection of ``wrapped``, or one dropped at once when ``limit`` are open."""
        if len(self.protocols) < self.limit:
            return super().buildProtocol(addr)
        self._refused(addr)
        return _Refused()

    def _refused(self, addr: IAddress) -> None:
        if self.observer is not None:
            self.observer(MAX_CONNECTIONS)
        self._unlogged += 1
        now = self.clock.seconds()
        if self._logged_at is not None and now - self._logged_at < self.log_interval:
            return
        self.log.warn(
            "Closed {count} new connection(s) to {endpoint}, the latest from {peer}: "
            "{limit} are open, the most allowed (--max-connections)",
            count=self._unlogged,
            endpoint=self.description,
            peer=addr,
            limit=self.limit,
        )
        self._unlogged = 0
        self._logged_at = now


@implementer(IStreamServerEndpoint)
class LimitedEndpoint:
    """``endpoint``, serving at most ``limit`` connections at once (see :class:`ConnectionLimit`)."""

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        limit: int,
        clock: IReactorTime,
        description: str = "",
        observer: Callable[[str], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.limit = limit
        self.clock = clock
        self.description = description
        self.observer = observer

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        """Listen on ``endpoint`` with ``protocolFactory`` behind the limit."""
        return self.endpoint.listen(
            ConnectionLimit(protocolFactory, self.limit, self.clock, self.description, self.observer)
        )
