"""A worker process: ``python -m k8s_sql.workers.worker [the server's options]``.

Started by a ``WorkerSupervisor`` only, with ``WORKER_ENV`` describing it and two sockets
inherited: the control channel and the hand-off socket.  It is a complete server
(``K8sSQLService``) whose client endpoints are the connections the supervisor hands over,
without a metrics port of its own (the supervisor serves one for all workers); only
worker 0 sweeps leases and compacts.  Its last stage, ``SupervisorLink``, says it is
ready, passes every commit it makes to its siblings through the supervisor (and the
commits other servers signal to it: only worker 0 has the peer port of ``--peer-listen``),
and answers the supervisor's questions; when the supervisor goes away, the worker stops.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client.exposition import generate_latest
from twisted.application.service import Service
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IAddress, IStreamServerEndpoint
from twisted.internet.task import react
from twisted.logger import globalLogBeginner

from k8s_sql.config import ProcessConfig, ServerConfig
from k8s_sql.grpc.tls import TLSServerEndpoint
from k8s_sql.logs import log_observer
from k8s_sql.service import K8sSQLService
from k8s_sql.tap import Options, serve
from k8s_sql.workers.channel import ControlChannel
from k8s_sql.workers.handoff import HandedEndpoint, Receiver
from k8s_sql.workers.metrics import SupervisorMetricsPage
from k8s_sql.workers.supervisor import CONTROL_FD, HANDOFF_FD, WORKER_ENV, WorkerSpec, _Connected

_FAMILIES = {"INET": socket.AF_INET, "INET6": socket.AF_INET6, "UNIX": socket.AF_UNIX}


def address_of(spec: list[Any]) -> IAddress:
    """The address a supervisor listens on, from the worker's environment."""
    kind = spec[0]
    if kind == "UNIX":
        return UNIXAddress(spec[1])
    return (IPv6Address if kind == "INET6" else IPv4Address)("TCP", spec[1], spec[2])


class SupervisorLink(Service):
    """The worker's end of its control channel: the last stage of the worker's server.

    Starting it means every stage before it is ready, so it says so.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.channel = ControlChannel(
            {"commit": self._commit, "metrics": self._metrics, "health": self._health}, lost=self._supervisor_gone
        )
        #: The worker's server, of which this is the last stage (``attach``).
        self.server: K8sSQLService
        self._unsubscribe: list[Callable[[], None]] = []

    def attach(self, server: K8sSQLService) -> None:
        """Become the last stage of ``server``."""
        self.server = server
        self.setName("supervisor")
        self.setServiceParent(server)

    def startService(self) -> None:
        """Connect to the supervisor, pass on commits, say the worker serves."""
        super().startService()
        self.reactor.adoptStreamConnection(CONTROL_FD, socket.AF_UNIX, _Connected(self.channel))
        os.close(CONTROL_FD)
        signals = self.server.signals
        self._unsubscribe = [signals.subscribe_local(self._committed), signals.subscribe_peer(self._committed)]
        self.channel.send("ready")

    def stopService(self) -> None:
        """Pass on no more commits."""
        super().stopService()
        unsubscribe, self._unsubscribe = self._unsubscribe, []
        for stop in unsubscribe:
            stop()

    def _committed(self, revision: int) -> None:
        """This worker committed, or a peer server signalled to it: tell the siblings."""
        self.channel.send("commit", revision=revision)

    def _commit(self, message: dict[str, Any]) -> None:
        """A sibling committed: the follower reads the log at once."""
        self.server.signals.committed(int(message["revision"]))

    async def _metrics(self, message: dict[str, Any]) -> str:
        metrics = self.server.metrics
        await metrics.sample(self.server.store, self.reactor)
        return generate_latest(metrics.registry).decode()

    async def _health(self, message: dict[str, Any]) -> str | None:
        return await self.server.database_health.check()

    def _supervisor_gone(self) -> None:
        if self.running:
            self.reactor.stop()


class WorkerOptions(Options):
    """The server's options, building a worker of it rather than a supervisor."""

    def __init__(self, spec: WorkerSpec, reactor: Any = None) -> None:
        super().__init__(reactor)
        self.spec = spec

    def make_service(self, config: ServerConfig, process: ProcessConfig, reactor: Any) -> K8sSQLService:
        """A complete server on the connections the supervisor hands over."""
        receiver = Receiver(reactor, socket.socket(fileno=HANDOFF_FD))
        receiver.handoff.setblocking(False)
        addresses = self.spec.addresses

        def handed(planned: Sequence[tuple[str, IStreamServerEndpoint]]) -> list[tuple[str, IStreamServerEndpoint]]:
            return [
                (
                    description,
                    HandedEndpoint(
                        receiver,
                        index,
                        _FAMILIES[address[0]],
                        address_of(address),
                        endpoint.wrap if isinstance(endpoint, TLSServerEndpoint) else None,
                    ),
                )
                for index, ((description, endpoint), address) in enumerate(zip(planned, addresses, strict=True))
            ]

        link = SupervisorLink(reactor)
        if self.spec.index != 0:  # worker 0 takes the peer port, and passes what it hears on
            config = dataclasses.replace(config, peer_listen=None, advertise_peer_urls=[], peer_client_cert_auth=False)
        server = K8sSQLService(
            dataclasses.replace(config, metrics_listen=[]),
            reactor,
            endpoints=handed,
            housekeeping=self.spec.index == 0,
            client_metrics=SupervisorMetricsPage(link.channel),
        )
        link.attach(server)
        return server


def main(argv: Sequence[str] | None = None) -> None:
    """Run one worker of the server the options describe, until SIGTERM or its supervisor's end."""
    spec = WorkerSpec.from_json(os.environ[WORKER_ENV])
    options = WorkerOptions(spec)
    options.parseOptions(sys.argv[1:] if argv is None else list(argv))
    process = options.process()
    observer = log_observer(process.log_format, process.log_level, sys.stdout, worker=spec.index)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    assert options.service is not None
    react(serve, (options.service,))


if __name__ == "__main__":
    main()
