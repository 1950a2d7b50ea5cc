"""A TCP proxy in front of a database server, which a test can cut and restore."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from twisted.internet import defer
from twisted.protocols import portforward


class _Server(portforward.ProxyServer):
    noisy = False

    def connectionMade(self) -> None:
        self.factory.connections.add(self)
        super().connectionMade()

    def connectionLost(self, reason: Any) -> None:
        self.factory.connections.discard(self)
        super().connectionLost(reason)


class _Factory(portforward.ProxyFactory):
    protocol = _Server
    noisy = False

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.connections: set[_Server] = set()


class CuttableProxy:
    """Forwards 127.0.0.1:``port`` to a server; ``cut`` drops every connection and refuses
    new ones until ``restore``.  Its methods run in the reactor thread."""

    def __init__(self, reactor: Any, url: str) -> None:
        target = urlsplit(url)
        self._reactor = reactor
        self._factory = _Factory(target.hostname, target.port)
        self._listening: Any = None
        self.port = 0
        self._url = target

    def start(self) -> str:
        """Listen; return ``url`` pointing at the proxy instead of the server."""
        self._listening = self._reactor.listenTCP(self.port, self._factory, interface="127.0.0.1")
        self.port = self._listening.getHost().port
        return self._url._replace(netloc=self._url.netloc.replace(f":{self._url.port}", f":{self.port}")).geturl()

    def cut(self) -> defer.Deferred:
        """Stop listening and abort every proxied connection."""
        for connection in list(self._factory.connections):
            connection.transport.abortConnection()
        stopping, self._listening = self._listening, None
        return defer.maybeDeferred(stopping.stopListening)

    def restore(self) -> None:
        """Listen again on the same port."""
        self.start()
