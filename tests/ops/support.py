"""Helpers of the operations tests: an in-process server, HTTP requests, a database proxy
that can be cut, and twistd as a child process."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from prometheus_client.parser import text_string_to_metric_families

from k8s_sql.service import K8sSQLService, ServerConfig
from tests.processes import ServerProcess

Run = Callable[..., Any]
#: The twistd script installed beside this Python.
TWISTD = str(Path(sys.executable).parent / "twistd")
#: The console script installed beside this Python.
K8S_SQL = str(Path(sys.executable).parent / "k8s-sql")
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


class DatabaseProxy:
    """A TCP proxy on 127.0.0.1 in front of a database server, that a test can cut and restore.

    It runs in threads of its own, not in the reactor: the store's pool threads talk through it,
    and the reactor may wait for them (closing a pool joins its threads).
    """

    def __init__(self, database_url: str) -> None:
        self._target = urlsplit(database_url)
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.port = 0
        self.restore()

    def url(self) -> str:
        """The database URL, through the proxy."""
        target = self._target
        credentials = target.netloc.rpartition("@")[0]
        return target._replace(netloc=f"{credentials}@127.0.0.1:{self.port}").geturl()

    def restore(self) -> None:
        """Accept connections (again, on the same port)."""
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Drop every connection and refuse new ones, as a database that went away."""
        with self._lock:
            listener, self._listener = self._listener, None
            doomed, self._sockets = self._sockets, set()
        if listener is not None:
            listener.close()
        for connection in doomed:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    close = cut

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by cut()
            try:
                server = socket.create_connection((self._target.hostname, self._target.port), timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    server.close()
                    return
                self._sockets |= {client, server}
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


class Twistd(ServerProcess):
    """``twistd -n k8s-sql`` in a child process, the plugin found in the installed package."""

    def __init__(self, *arguments: str, cwd: str) -> None:
        super().__init__([TWISTD, "-n", "--pidfile=", "k8s-sql", *arguments], cwd=cwd)
