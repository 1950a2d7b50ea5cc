"""Connections accepted by the supervisor and handed to worker processes.

The supervisor listens on every ``--listen`` endpoint and accepts the connections itself
(``Acceptor``), so that it can share them out evenly: a kernel that lets several
processes accept on one socket wakes them all and leaves the balance to chance, which
with a handful of long-lived client connections (kube-apiserver's, a benchmark's) can
leave a core idle.  Each accepted socket goes to a worker over a UNIX datagram socket
(``send``, one datagram per connection: its descriptor and the index of its endpoint).
In the worker, ``Receiver`` takes them in and starts each on the factory of its
endpoint, which ``HandedEndpoint`` registers as if it were listening.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IProtocolFactory,
    IReadDescriptor,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

#: The most connections accepted in one turn of the reactor from one listening socket.
ACCEPTS_PER_READ = 64

#: ``dispatch(connection, index)``: hand a freshly accepted socket to a worker.
Dispatch = Callable[[socket.socket, int], None]


@implementer(IReadDescriptor)
class Acceptor:
    """Accepts connections on a listening socket the reactor watches, for the supervisor.

    @param listening: the listening socket (non-blocking).
    @param index: which endpoint it is, as the workers number them.
    @param dispatch: where each accepted connection goes; it owns the socket from then on.
    """

    log = Logger()

    def __init__(self, reactor: Any, listening: socket.socket, index: int, dispatch: Dispatch) -> None:
        self.reactor = reactor
        self.listening = listening
        self.index = index
        self.dispatch = dispatch

    def start(self) -> None:
        """Accept from now on."""
        self.reactor.addReader(self)

    def stop(self) -> None:
        """Accept no more."""
        self.reactor.removeReader(self)

    def fileno(self) -> int:
        """The listening socket's descriptor."""
        return self.listening.fileno()

    def doRead(self) -> None:
        """Accept what is waiting and hand each connection on."""
        for _ in range(ACCEPTS_PER_READ):
            try:
                connection, _ = self.listening.accept()
            except BlockingIOError:
                return
            except OSError as error:
                if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self.log.warn("Cannot accept a connection now: {error}", error=error)
                    return
                raise
            self.dispatch(connection, self.index)

    def connectionLost(self, reason: Failure) -> None:
        """The listening socket failed: stop watching it."""
        self.log.error("Stopped accepting on endpoint {index}: {reason}", index=self.index, reason=reason.value)

    def logPrefix(self) -> str:
        """How the reactor names this descriptor in logs."""
        return "Acceptor"


def send(handoff: socket.socket, connection: socket.socket, index: int) -> bool:
    """Pass ``connection`` over the datagram socket ``handoff``; whether it went.

    The connection's descriptor is closed here either way: once sent, the worker holds the
    only copy that matters.
    """
    try:
        socket.send_fds(handoff, [bytes((index,))], [connection.fileno()])
        return True
    except OSError:
        return False
    finally:
        connection.close()


@implementer(IReadDescriptor)
class Receiver:
    """Takes in the connections the supervisor hands this worker, on ``handoff``.

    Each starts on the factory registered for its endpoint's index (``register``); a
    connection for an endpoint no longer registered (the worker is stopping) is closed.
    """

    log = Logger()

    def __init__(self, reactor: Any, handoff: socket.socket) -> None:
        self.reactor = reactor
        self.handoff = handoff
        self._endpoints: dict[int, tuple[int, IProtocolFactory]] = {}

    def register(self, index: int, family: int, factory: IProtocolFactory) -> None:
        """Start connections of endpoint ``index`` (address family ``family``) on ``factory``."""
        if not self._endpoints:
            self.reactor.addReader(self)
        self._endpoints[index] = (family, factory)

    def unregister(self, index: int) -> None:
        """Take no more connections of endpoint ``index``."""
        self._endpoints.pop(index, None)
        if not self._endpoints:
            self.reactor.removeReader(self)

    def fileno(self) -> int:
        """The hand-off socket's descriptor."""
        return self.handoff.fileno()

    def doRead(self) -> None:
        """Start every connection waiting."""
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.handoff, 16, 1)
            except BlockingIOError:
                return
            if not data:
                return
            for fd in fds:
                self._start(fd, data[0])

    def _start(self, fd: int, index: int) -> None:
        try:
            endpoint = self._endpoints.get(index)
            if endpoint is not None:
                family, factory = endpoint
                # The reactor takes a duplicate of the descriptor; ours is closed below.
                self.reactor.adoptStreamConnection(fd, family, factory)
        except Exception:
            self.log.failure("A handed-over connection could not be started")
        finally:
            os.close(fd)

    def connectionLost(self, reason: Failure) -> None:
        """The supervisor's end closed: no more connections will come."""

    def logPrefix(self) -> str:
        """How the reactor names this descriptor in logs."""
        return "Receiver"


@implementer(IListeningPort)
class HandedPort:
    """What a ``HandedEndpoint`` listens with: the supervisor's port, seen from a worker."""

    def __init__(self, receiver: Receiver, index: int, family: int, factory: IProtocolFactory, host: IAddress) -> None:
        self._receiver = receiver
        self._index = index
        self._family = family
        self._factory = factory
        self._host = host

    def startListening(self) -> None:
        """Take connections."""
        self._factory.doStart()
        self._receiver.register(self._index, self._family, self._factory)

    def stopListening(self) -> Deferred[None]:
        """Take no more connections."""
        self._receiver.unregister(self._index)
        self._factory.doStop()
        return succeed(None)

    def getHost(self) -> IAddress:
        """The address the supervisor listens on."""
        return self._host


@implementer(IStreamServerEndpoint)
class HandedEndpoint:
    """An endpoint of a worker: connections the supervisor accepted on endpoint ``index``.

    @param wrap: what the endpoint does to the factory it is given (TLS), or ``None``.
    @param host: the supervisor's listening address.
    """

    def __init__(
        self,
        receiver: Receiver,
        index: int,
        family: int,
        host: IAddress,
        wrap: Callable[[IProtocolFactory], IProtocolFactory] | None = None,
    ) -> None:
        self.receiver = receiver
        self.index = index
        self.family = family
        self.host = host
        self.wrap = wrap

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        """Take the connections of this endpoint, from now on."""
        factory = self.wrap(protocolFactory) if self.wrap is not None else protocolFactory
        port = HandedPort(self.receiver, self.index, self.family, factory, self.host)
        port.startListening()
        return succeed(port)
