"""The supervisor of a server's worker processes.

It listens on the client ports and hands every accepted connection to a worker in turn
(``k8s_sql.workers.handoff``), relays each worker's commits to the others, serves the
metrics and health pages for all of them (``k8s_sql.workers.metrics``), restarts a worker
that dies, and on stop has every worker drain its calls and exit.  The workers run the
same command line (``python -m k8s_sql.workers.worker``), so each is a complete server on
the same database; only the first runs the lease sweeper and the compactor.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from twisted.application.service import Service
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import CancelledError, Deferred, DeferredList, ensureDeferred, maybeDeferred
from twisted.internet.error import ProcessDone
from twisted.internet.interfaces import IAddress, IDelayedCall, IListeningPort
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from k8s_sql.config import ProcessConfig, ServerConfig, plan_server
from k8s_sql.grpc.tls import TLSServerEndpoint
from k8s_sql.service import describe_address
from k8s_sql.workers.channel import ChannelClosed, ControlChannel, Handler
from k8s_sql.workers.handoff import Acceptor, send
from k8s_sql.workers.metrics import server_metrics, supervisor_site

#: The environment variable that tells a worker process who it is (see ``WorkerSpec``).
WORKER_ENV = "K8S_SQL_WORKER"
#: The descriptors of a worker's control channel and hand-off socket.
CONTROL_FD = 3
HANDOFF_FD = 4
#: Seconds before a dead worker is started again: doubled while it keeps dying early.
FIRST_RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0
#: A worker that served this long resets the restart delay.
STABLE_AFTER = 60.0
#: Seconds a worker may take to drain beyond the grace period before it is killed.
KILL_MARGIN = 10.0


def address_spec(address: IAddress) -> list[Any]:
    """An address as the worker's environment carries it."""
    if isinstance(address, IPv6Address):
        return ["INET6", address.host, address.port]
    if isinstance(address, IPv4Address):
        return ["INET", address.host, address.port]
    if isinstance(address, UNIXAddress):
        name = address.name
        return ["UNIX", name.decode() if isinstance(name, bytes) else name]
    raise ValueError(f"workers cannot share a listening port of {address!r}")


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """Who a worker is, as its supervisor tells it (JSON in ``WORKER_ENV``)."""

    index: int
    count: int
    #: Per ``--listen`` endpoint, in order: the address the supervisor listens on.
    addresses: list[list[Any]]

    def to_json(self) -> str:
        """The spec as the environment carries it."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        """The spec the supervisor wrote."""
        return cls(**json.loads(text))


class _Worker:
    """One worker process, as the supervisor sees it."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: Any = None
        self.channel: ControlChannel | None = None
        self.handoff: socket.socket | None = None
        self.ready = False
        self.started = 0.0
        self.restart_delay = FIRST_RESTART_DELAY
        self.restart: IDelayedCall | None = None
        self.ended: Deferred[None] | None = None

    @property
    def pid(self) -> int | None:
        """The process ID, while it runs."""
        return self.process.pid if self.process is not None else None


class _WorkerProcess(ProcessProtocol):
    def __init__(self, supervisor: WorkerSupervisor, worker: _Worker) -> None:
        self.supervisor = supervisor
        self.worker = worker

    def processEnded(self, reason: Failure) -> None:
        self.supervisor._ended(self.worker, reason)


class _Connected(Factory):
    """Builds one given protocol: for a socket adopted as a connection."""

    def __init__(self, protocol: Protocol) -> None:
        self.protocol_instance = protocol

    def buildProtocol(self, addr: Any) -> Protocol:
        """The protocol given."""
        return self.protocol_instance


class _Refused(Protocol):
    """What would serve a connection on a supervisor's port: none is ever accepted there."""


class WorkerSupervisor(Service):
    """Runs ``count`` worker processes of the server ``config`` describes.

    @param process: the process's settings (workers and logs); passed on to the workers
        as the same command line.
    @param argv: the command line the workers run with.
    @raise ConfigurationError: when ``config`` cannot work (see ``plan_server``).
    """

    log = Logger()

    def __init__(
        self, config: ServerConfig, process: ProcessConfig, argv: Sequence[str], reactor: Any, count: int
    ) -> None:
        self.config = config
        self.process = process
        self.argv = list(argv)
        self.reactor = reactor
        self.count = count
        self.plan = plan_server(config, reactor)
        self.workers = [_Worker(index) for index in range(count)]
        #: The ports the etcd API is served on (the workers answer), once started.
        self.ports: list[IListeningPort] = []
        #: The ports serving metrics and health checks, once started.
        self.metrics_ports: list[IListeningPort] = []
        self.registry = CollectorRegistry()
        self.ready_workers = Gauge("k8s_sql_workers", "Worker processes serving.", registry=self.registry)
        self.restarts = Counter(
            "k8s_sql_worker_restarts", "Worker processes started again after they died.", registry=self.registry
        )
        self._acceptors: list[Acceptor] = []
        self._turn = 0
        self._stopping = False
        self._starting: Deferred[None] | None = None
        self._all_ready: Deferred[None] | None = None
        self._outcome: Failure | bool | None = False
        self._waiting: list[Deferred[list[IListeningPort]]] = []

    # Service

    def startService(self) -> None:
        """Listen, start the workers; see ``whenReady``."""
        super().startService()
        self._starting = ensureDeferred(self._start())
        self._starting.addBoth(self._started)

    def whenReady(self) -> Deferred[list[IListeningPort]]:
        """Fire with the etcd API's listening ports once every worker serves, or fail as
        start-up failed."""
        waiter: Deferred[list[IListeningPort]] = Deferred()
        if self._outcome is False:
            self._waiting.append(waiter)
        elif isinstance(self._outcome, Failure):
            waiter.errback(self._outcome)
        else:
            waiter.callback(self.ports)
        return waiter

    def stopService(self) -> Deferred[None]:
        """Stop accepting, have every worker drain and exit, stop listening."""
        super().stopService()
        return ensureDeferred(self._stop())

    async def _start(self) -> None:
        for index, (_, endpoint) in enumerate(self.plan.grpc):
            raw = endpoint.wrapped if isinstance(endpoint, TLSServerEndpoint) else endpoint
            refused = Factory.forProtocol(_Refused)
            refused.noisy = False
            port = await raw.listen(refused)
            # The port only owns the socket: the acceptor takes the connections.
            port.stopReading()  # type: ignore[attr-defined]
            self.ports.append(port)
            listening = socket.socket(fileno=os.dup(port.fileno()))  # type: ignore[attr-defined]
            listening.setblocking(False)
            self._acceptors.append(Acceptor(self.reactor, listening, index, self._dispatch))
        site = supervisor_site(self)
        for _, endpoint in self.plan.metrics:
            self.metrics_ports.append(await endpoint.listen(site))
        self._all_ready = Deferred()
        for worker in self.workers:
            self._spawn(worker)
        await self._all_ready
        for acceptor in self._acceptors:
            acceptor.start()

    def _started(self, outcome: object) -> None:
        self._starting = None
        if isinstance(outcome, Failure):
            if outcome.check(CancelledError):
                self.log.info("k8s-sql stopped before it started")
            else:
                self.log.critical("k8s-sql could not start: {reason}", reason=outcome.getErrorMessage())
            self._outcome = outcome
        else:
            for (description, _), port in zip(self.plan.grpc, self.ports, strict=True):
                self.log.info(
                    "k8s-sql serving the etcd API on {address} ({endpoint}) with {count} worker processes",
                    address=describe_address(port.getHost()),
                    endpoint=description,
                    count=self.count,
                )
            self._outcome = None
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            if isinstance(outcome, Failure):
                waiter.errback(outcome)
            else:
                waiter.callback(self.ports)

    async def _stop(self) -> None:
        self._stopping = True
        if self._starting is not None:
            self._starting.cancel()
        for acceptor in self._acceptors:
            acceptor.stop()
            acceptor.listening.close()
        self._acceptors = []
        ended = [self._terminate(worker) for worker in self.workers]
        await DeferredList([ending for ending in ended if ending is not None])
        for port in self.ports + self.metrics_ports:
            await maybeDeferred(port.stopListening)
        self.ports, self.metrics_ports = [], []

    # Workers

    def _spawn(self, worker: _Worker) -> None:
        worker.restart = None
        control, control_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        handoff, handoff_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        spec = WorkerSpec(worker.index, self.count, [address_spec(port.getHost()) for port in self.ports])
        try:
            worker.process = self.reactor.spawnProcess(
                _WorkerProcess(self, worker),
                sys.executable,
                [sys.executable, "-m", "k8s_sql.workers.worker", *self.argv],
                env={**os.environ, WORKER_ENV: spec.to_json()},
                childFDs={1: 1, 2: 2, CONTROL_FD: control_child.fileno(), HANDOFF_FD: handoff_child.fileno()},
            )
        finally:
            control_child.close()
            handoff_child.close()
        worker.started = self.reactor.seconds()
        worker.ready = False
        handoff.setblocking(False)
        worker.handoff = handoff
        handlers: dict[str, Handler] = {
            "ready": lambda message: self._ready(worker),
            "commit": lambda message: self._commit(worker, message),
            "server-metrics": self._server_metrics,
        }
        worker.channel = ControlChannel(handlers)
        self.reactor.adoptStreamConnection(control.fileno(), socket.AF_UNIX, _Connected(worker.channel))
        control.close()
        self.log.info("Started worker {index} (pid {pid})", index=worker.index, pid=worker.pid)

    def _ready(self, worker: _Worker) -> None:
        worker.ready = True
        self.ready_workers.set(sum(w.ready for w in self.workers))
        if self._all_ready is not None and all(w.ready for w in self.workers):
            ready, self._all_ready = self._all_ready, None
            ready.callback(None)

    def _commit(self, source: _Worker, message: dict[str, Any]) -> None:
        """Tell every other worker of a commit one of them made: their followers read at once."""
        for worker in self.workers:
            if worker is not source and worker.ready and worker.channel is not None:
                worker.channel.send("commit", revision=message["revision"])

    async def _server_metrics(self, message: dict[str, Any]) -> dict[str, str]:
        """A worker's client port serves the whole server's metrics."""
        content_type, body = await server_metrics(self, message.get("accept", ""))
        return {"content_type": content_type, "body": body.decode()}

    def _dispatch(self, connection: socket.socket, index: int) -> None:
        """Hand an accepted connection to the next ready worker that takes it."""
        connection.setblocking(False)
        for _ in range(self.count):
            worker = self.workers[self._turn % self.count]
            self._turn += 1
            if worker.ready and worker.handoff is not None:
                handed = socket.socket(fileno=os.dup(connection.fileno()))
                if send(worker.handoff, handed, index):
                    connection.close()
                    return
        self.log.warn("No worker took a connection on endpoint {index}: closed", index=index)
        connection.close()

    def _ended(self, worker: _Worker, reason: Failure) -> None:
        was_ready, worker.ready = worker.ready, False
        worker.process = None
        self.ready_workers.set(sum(w.ready for w in self.workers))
        if worker.handoff is not None:
            worker.handoff.close()
            worker.handoff = None
        if worker.channel is not None and worker.channel.transport is not None:
            worker.channel.transport.loseConnection()
        worker.channel = None
        if worker.ended is not None:
            ended, worker.ended = worker.ended, None
            ended.callback(None)
        if self._stopping:
            return
        how = "cleanly" if reason.check(ProcessDone) else reason.getErrorMessage()
        if self._all_ready is not None:
            # Still starting: a worker that cannot start means the server cannot.
            starting, self._all_ready = self._all_ready, None
            starting.errback(Failure(RuntimeError(f"worker {worker.index} exited before serving ({how})")))
            return
        if was_ready and self.reactor.seconds() - worker.started >= STABLE_AFTER:
            worker.restart_delay = FIRST_RESTART_DELAY
        delay, worker.restart_delay = worker.restart_delay, min(worker.restart_delay * 2, MAX_RESTART_DELAY)
        self.log.warn(
            "Worker {index} exited {how}; starting it again in {delay} s", index=worker.index, how=how, delay=delay
        )
        self.restarts.inc()
        worker.restart = self.reactor.callLater(delay, self._spawn, worker)

    def _terminate(self, worker: _Worker) -> Deferred[None] | None:
        """Have ``worker`` drain and exit; fires once it has (killed if it takes too long)."""
        if worker.restart is not None and worker.restart.active():
            worker.restart.cancel()
        if worker.process is None:
            return None
        worker.ended = Deferred()
        worker.process.signalProcess("TERM")
        kill = self.reactor.callLater(self.config.shutdown_grace + KILL_MARGIN, self._kill, worker)
        return worker.ended.addBoth(lambda result: (kill.cancel() if kill.active() else None, result)[1])

    def _kill(self, worker: _Worker) -> None:
        if worker.process is not None:
            self.log.warn("Worker {index} did not stop in time: killed", index=worker.index)
            worker.process.signalProcess("KILL")

    # What the metrics site asks

    def ready_channels(self) -> list[ControlChannel]:
        """The control channels of the workers serving now."""
        return [worker.channel for worker in self.workers if worker.ready and worker.channel is not None]

    async def ask_any(self, kind: str) -> Any:
        """Ask the first serving worker ``kind`` (``ChannelClosed`` when none answers)."""
        for channel in self.ready_channels():
            try:
                return await channel.request(kind)
            except ChannelClosed:
                continue
        raise ChannelClosed("no worker is serving")
