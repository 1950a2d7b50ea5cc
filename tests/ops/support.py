"""Helpers of the operations tests: an in-process server, HTTP requests, a database proxy
that can be cut, and twistd as a child process."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from prometheus_client.parser import text_string_to_metric_families
from twisted.protocols.portforward import ProxyFactory, ProxyServer

from k8s_sql.service import K8sSQLService, ServerConfig
from tests.processes import SOURCE_ROOT, ServerProcess

Run = Callable[..., Any]
#: The twistd script installed beside this Python.
TWISTD = str(Path(sys.executable).parent / "twistd")
LOCAL = "tcp:0:interface=127.0.0.1"


@dataclass
class Response:
    """An HTTP response, read whole."""

    status: int
    headers: Message
    body: bytes


def get(url: str, headers: dict[str, str] | None = None, timeout: float = 10.0) -> Response:
    """GET ``url``; error statuses are answers too."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Response(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, error.headers, error.read())


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The samples of a Prometheus text page, by (name, sorted labels)."""
    response = get(url)
    assert response.status == 200, response
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.body.decode())
        for sample in family.samples
    }


class InProcessServer:
    """A ``K8sSQLService`` in the test reactor, serving the etcd API and metrics on free ports."""

    def __init__(self, run: Run, reactor: Any, database_url: str, **config: Any) -> None:
        self.run = run
        self.service = K8sSQLService(
            ServerConfig(listen=[LOCAL], metrics_listen=[LOCAL], endpoint=database_url, **config), reactor,
        )
        run(self.service.startService)
        run(self.service.whenReady)
        (self.endpoint,) = self.service.addresses()
        (metrics_port,) = self.service.metrics_ports
        self.http = f"http://127.0.0.1:{metrics_port.getHost().port}"

    def get(self, path: str, **options: Any) -> Response:
        """GET ``path`` of the metrics site."""
        return get(self.http + path, **options)

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The metrics, sampled now."""
        return scrape(self.http + "/metrics")

    def stop(self) -> None:
        """Stop the service (ports, calls, background services, database)."""
        self.run(self.service.stopService)


class _Forward(ProxyServer):
    def connectionMade(self) -> None:
        self.factory.open.add(self)
        super().connectionMade()

    def connectionLost(self, reason: Any) -> None:
        self.factory.open.discard(self)
        super().connectionLost(reason)


class _Forwarding(ProxyFactory):
    protocol = _Forward
    noisy = False

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.open: set[_Forward] = set()


class DatabaseProxy:
    """A TCP proxy on 127.0.0.1 in front of a database server, that a test can cut and restore.

    ``url(database_url)`` is the same URL through the proxy.
    """

    def __init__(self, run: Run, reactor: Any, database_url: str) -> None:
        self.run = run
        self.reactor = reactor
        target = urlsplit(database_url)
        self._target = target
        self._factory = _Forwarding(target.hostname, target.port)
        self._listening = run(reactor.listenTCP, 0, self._factory, interface="127.0.0.1")
        self.port = self._listening.getHost().port

    def url(self) -> str:
        """The database URL, through the proxy."""
        target = self._target
        credentials = target.netloc.rpartition("@")[0]
        return target._replace(netloc=f"{credentials}@127.0.0.1:{self.port}").geturl()

    def cut(self) -> None:
        """Drop every connection and refuse new ones, as a database that went away."""
        def cut() -> Any:
            for connection in list(self._factory.open):
                connection.transport.abortConnection()
            return self._listening.stopListening()
        self.run(cut)

    def restore(self) -> None:
        """Accept connections again, on the same port."""
        self._listening = self.run(self.reactor.listenTCP, self.port, self._factory, interface="127.0.0.1")

    def close(self) -> None:
        """Stop proxying."""
        self.cut()


class Twistd(ServerProcess):
    """``twistd -n k8s-sql`` in a child process, the plugin found through ``PYTHONPATH``."""

    def __init__(self, *arguments: str, cwd: str) -> None:
        super().__init__([TWISTD, "-n", "--pidfile=", "k8s-sql", *arguments], env={"PYTHONPATH": str(SOURCE_ROOT)}, cwd=cwd)
