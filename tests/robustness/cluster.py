"""The servers a robustness run drives: k8s-sql child processes on one fresh database.

SQLite gets one server (its file is for one host); MariaDB and PostgreSQL get two servers
sharing the database, reached through a ``CuttableProxy`` on 127.0.0.1 so that a database
restart or a cut connection can be simulated without touching the shared database server.
Each server keeps its port across restarts, so clients reconnect to it.
"""

from __future__ import annotations

import os
import signal
import tempfile
from typing import Any

from tests.conftest import SERVER_URLS, DatabaseServer, ReactorThread
from tests.processes import K8sSQL, free_port
from tests.store.proxy import CuttableProxy

#: Server options: fast lease sweeps and polling, so that faults are ridden through quickly.
SERVER_OPTIONS = ("--poll-interval", "0.2s", "--progress-notify-interval", "2s", "--lease-sweep-interval", "0.5s")


class Cluster:
    """k8s-sql servers on one fresh database of ``backend``."""

    def __init__(self, backend: str, reactor: ReactorThread) -> None:
        self.backend = backend
        self._reactor = reactor
        self._workdir = tempfile.TemporaryDirectory(prefix="k8s-sql-robustness-")
        self._server: DatabaseServer | None = None
        self._database = ""
        self.proxy: CuttableProxy | None = None
        if backend == "sqlite":
            self.url = f"sqlite:///{self._workdir.name}/k8s-sql.db"
            count = 1
        else:
            self._server = DatabaseServer(backend, SERVER_URLS[backend])
            self._database = self._server.create()
            self.proxy = CuttableProxy(reactor.reactor, self._server.database_url(self._database))
            self.url = reactor.run(self.proxy.start)
            count = 2
        self.ports = [free_port() for _ in range(count)]
        self.servers: list[K8sSQL | None] = [None] * count
        #: Every server process started.
        self.pids: list[int] = []
        #: What the servers killed so far had printed.
        self._past_output: list[str] = []
        try:
            for index in range(count):
                self.start(index)
        except BaseException:
            self.close()  # the servers already started, and the database
            raise

    @property
    def endpoints(self) -> list[str]:
        """host:port of each server."""
        return [f"127.0.0.1:{port}" for port in self.ports]

    def start(self, index: int) -> None:
        """Start server ``index`` on its port."""
        server = K8sSQL(
            self.url,
            *SERVER_OPTIONS,
            "--name",
            f"server-{index}",
            listen=f"tcp:{self.ports[index]}:interface=127.0.0.1",
            cwd=self._workdir.name,
        )
        self.servers[index] = server
        self.pids.append(server.process.pid)

    def kill(self, index: int) -> None:
        """SIGKILL server ``index`` and wait for it to be gone."""
        server = self.servers[index]
        assert server is not None
        server.process.kill()
        server.process.wait()
        server._reader.join(5)
        self._past_output.append(server.text())
        self.servers[index] = None

    def pause(self, index: int, paused: bool) -> None:
        """SIGSTOP or SIGCONT server ``index``."""
        server = self.servers[index]
        assert server is not None
        os.kill(server.process.pid, signal.SIGSTOP if paused else signal.SIGCONT)

    def database_outage(self, down: bool) -> None:
        """Cut every database connection and refuse new ones (a restart), or end that."""
        assert self.proxy is not None
        self._reactor.run(self.proxy.cut if down else self.proxy.restore)

    def rss(self, index: int) -> tuple[int, int] | None:
        """(pid, resident set size in bytes) of server ``index``, if it runs."""
        server = self.servers[index]
        if server is None:
            return None
        try:
            with open(f"/proc/{server.process.pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return server.process.pid, int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def output(self) -> str:
        """What every server started so far printed."""
        return "".join(self._past_output) + "".join(server.text() for server in self.servers if server is not None)

    def close(self) -> None:
        """Stop everything and drop the database."""
        for index, server in enumerate(self.servers):
            if server is not None:
                self.pause(index, False)
                server.stop()
        if self.proxy is not None:
            self._reactor.run(self.proxy.cut)
        if self._server is not None:
            self._server.drop(self._database)
        self._workdir.cleanup()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
