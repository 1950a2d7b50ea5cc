"""The whole server as one Twisted service, for ``twistd``, the console script and embedding.

    from k8s_sql.service import K8sSQLService, ServerConfig

    server = K8sSQLService(ServerConfig(endpoint="sqlite:///state.db"), reactor)
    server.setServiceParent(application)      # or server.startService()
    ports = await server.whenReady()

Start-up opens the database (creating the schema on first use) before anything listens;
shut-down stops listening, sends GOAWAY, lets calls in flight finish for
``shutdown_grace`` seconds, then closes the database.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IAddress, IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure

from k8s_sql.etcd.header import Identity
from k8s_sql.etcd.kv import DEFAULT_MAX_REQUEST_BYTES, KVService
from k8s_sql.etcd.lease import DEFAULT_MIN_TTL, LeaseService
from k8s_sql.etcd.watch import DEFAULT_PROGRESS_INTERVAL, WatchService
from k8s_sql.grpc.health import HealthService
from k8s_sql.grpc.protocol import GRPCServerFactory
from k8s_sql.grpc.registry import MethodRegistry
from k8s_sql.lease.sweeper import DEFAULT_INTERVAL as DEFAULT_SWEEP_INTERVAL
from k8s_sql.lease.sweeper import LeaseSweeper
from k8s_sql.store import open_store
from k8s_sql.store.interfaces import IStore
from k8s_sql.watch.follower import Follower
from k8s_sql.watch.hub import WatchHub

DEFAULT_LISTEN = "tcp:2379:interface=127.0.0.1"
DEFAULT_ENDPOINT = "sqlite:///k8s-sql.db"


@dataclass
class ServerConfig:
    """Everything the server is configured with; the command line fills one of these."""

    #: Twisted server endpoint descriptions to serve the etcd API on.
    listen: list[str] = field(default_factory=lambda: [DEFAULT_LISTEN])
    #: The database URL (``sqlite:///path``, ``mysql://…``, ``postgres://…``).
    endpoint: str = DEFAULT_ENDPOINT
    #: This member's name; its member ID is derived from it and the cluster ID.
    name: str = "default"
    #: Seconds between polls for commits made by other servers sharing the database.
    poll_interval: float = 1.0
    #: Seconds between progress notifications to watches that asked for them.
    progress_notify_interval: float = DEFAULT_PROGRESS_INTERVAL
    #: The shortest lease TTL granted, in seconds.
    lease_min_ttl: int = DEFAULT_MIN_TTL
    #: Seconds between sweeps for expired leases.
    lease_sweep_interval: float = DEFAULT_SWEEP_INTERVAL
    #: The largest write request accepted, as etcd's ``--max-request-bytes``.
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    #: Seconds calls in flight may take to finish when the server stops.
    shutdown_grace: float = 5.0


def member_id(cluster_id: int, name: str) -> int:
    """A stable, positive 64-bit member ID for the member ``name`` of a cluster."""
    digest = hashlib.sha256(f"{cluster_id}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1 or 1


def describe_address(address: IAddress) -> str:
    """``host:port`` for an IP address, the path for a UNIX socket, else its repr."""
    if isinstance(address, (IPv4Address, IPv6Address)):
        return f"{address.host}:{address.port}"
    if isinstance(address, UNIXAddress):
        return str(address.name, "utf-8") if isinstance(address.name, bytes) else str(address.name)
    return repr(address)


class K8sSQLService(MultiService):
    """k8s-sql: the etcd v3 API over a SQL database, as one service.

    @param config: what to serve, from where.
    @param reactor: the reactor to listen and schedule on.
    """

    log = Logger()

    def __init__(self, config: ServerConfig, reactor: Any) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.store: IStore | None = None
        self.factory: GRPCServerFactory | None = None
        self.ports: list[IListeningPort] = []
        self._outcome: Failure | list[IListeningPort] | None = None
        self._waiting: list[Deferred[list[IListeningPort]]] = []
        self._starting: Deferred[list[IListeningPort]] | None = None

    def startService(self) -> None:
        """Open the database, then listen; see ``whenReady``."""
        super().startService()
        self._starting = ensureDeferred(self._start())
        self._starting.addBoth(self._started)

    def whenReady(self) -> Deferred[list[IListeningPort]]:
        """Fire with the listening ports once the server serves, or fail as start-up failed."""
        waiter: Deferred[list[IListeningPort]] = Deferred()
        if self._outcome is None:
            self._waiting.append(waiter)
        else:
            waiter.callback(self._outcome)
        return waiter

    async def _start(self) -> list[IListeningPort]:
        config, reactor = self.config, self.reactor
        self.store = store = await open_store(config.endpoint, reactor)
        identity = Identity(store.cluster_id, member_id(store.cluster_id, config.name))
        hub = WatchHub()
        follower = Follower(store, hub, reactor, poll_interval=config.poll_interval)
        follower.setServiceParent(self)
        LeaseSweeper(store, reactor, config.lease_sweep_interval).setServiceParent(self)
        registry = MethodRegistry()
        HealthService().register(registry)
        KVService(store, identity, config.max_request_bytes).register(registry)
        WatchService(
            hub, store, follower, identity, reactor, progress_interval=config.progress_notify_interval
        ).register(registry)
        LeaseService(store, identity, reactor, min_ttl=config.lease_min_ttl).register(registry)
        self.factory = GRPCServerFactory(registry, reactor)
        for description in config.listen:
            port = await serverFromString(reactor, description).listen(self.factory)
            self.ports.append(port)
            self.log.info(
                "k8s-sql serving the etcd API on {address} ({endpoint})",
                address=describe_address(port.getHost()),
                endpoint=description,
            )
        return self.ports

    def _started(self, outcome: Failure | list[IListeningPort]) -> None:
        if isinstance(outcome, Failure):
            self.log.critical(
                "k8s-sql could not start: {reason}", reason=outcome.getErrorMessage() or outcome.type
            )
        self._outcome = outcome
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.callback(outcome)

    def stopService(self) -> Deferred[None]:
        """Stop listening, drain calls in flight, stop the follower and sweeper, close the database."""
        return ensureDeferred(self._stop())

    async def _stop(self) -> None:
        if self._starting is not None and not self._starting.called:
            self._starting.cancel()
        for port in self.ports:
            await port.stopListening()
        self.ports = []
        if self.factory is not None:
            await self.factory.shutdown(self.config.shutdown_grace)
        await super().stopService()
        if self.store is not None:
            await self.store.close()
            self.store = None
