"""The whole server as one tree of Twisted services, for ``twistd``, the console script and embedding.

    from k8s_sql.service import K8sSQLService, ServerConfig

    server = K8sSQLService(ServerConfig(endpoint="sqlite:///state.db"), reactor)
    server.setServiceParent(application)      # or server.startService()
    ports = await server.whenReady()

The tree, started in this order (each stage once the one before is ready) and stopped in
the reverse order (``k8s_sql.staged``)::

    k8s-sql                K8sSQLService
      store                StoreService: opens the database (pools, schema, commit signals)
      follower             Follower: tails the revision log into the watch hub
      housekeeping         lease-sweeper (LeaseSweeper), compactor (AutoCompactor, if on)
      etcd                 EtcdAPI: registers the etcd services on the gRPC method table
      peers                listener (ListeningService, with --peer-listen): commit signals from
                           peers; signals (PeerSignals): this server's commits to its peers
      client               GRPCServer serving ClientPort (gRPC and the JSON gateway): one child per
                           --listen endpoint; drains both on stop
      metrics              one child per --metrics-listen endpoint
      members              MemberRegistry: this server's row in the member registry, its heartbeat

Embedding code finds a stage by name (``server.getServiceNamed("client")``).  Constructing
the service checks the configuration (``ConfigurationError``) and touches neither the
network nor the database.  See ``docs/embedding.md`` and ``docs/architecture.md``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from k8s_sql.cluster.endpoints import address_url, describe_address, peer_endpoint, peer_url
from k8s_sql.cluster.peers import PeerSignals, SignalListener
from k8s_sql.cluster.registry import MemberRegistry
from k8s_sql.config import ConfigurationError, ServerConfig, ServerPlan, plan_server
from k8s_sql.etcd.auth import AuthService
from k8s_sql.etcd.cluster import ClusterService
from k8s_sql.etcd.header import Identity, member_id
from k8s_sql.etcd.kv import KVService
from k8s_sql.etcd.lease import LeaseService
from k8s_sql.etcd.maintenance import MaintenanceService
from k8s_sql.etcd.services import register
from k8s_sql.etcd.watch import WatchService
from k8s_sql.gateway.port import ClientPort
from k8s_sql.gateway.site import Gateway, client_site
from k8s_sql.grpc.connections import LimitedEndpoint
from k8s_sql.grpc.health import HealthService
from k8s_sql.grpc.protocol import GRPCServerFactory, KiB
from k8s_sql.grpc.registry import MethodRegistry
from k8s_sql.grpc.service import GRPCServer
from k8s_sql.housekeeping.compactor import AutoCompactor
from k8s_sql.housekeeping.sweeper import LeaseSweeper
from k8s_sql.metrics.calls import InstrumentedRegistry
from k8s_sql.metrics.collectors import ServerMetrics
from k8s_sql.metrics.health import DatabaseHealth
from k8s_sql.metrics.web import metrics_pages, metrics_site
from k8s_sql.slowsql import SlowTransactionLog
from k8s_sql.staged import ListeningService, Readiness, StagedService
from k8s_sql.store.interfaces import IStore
from k8s_sql.store.pool import TransactionObserver
from k8s_sql.store.service import StoreService
from k8s_sql.store.store import SQLStore
from k8s_sql.watch.follower import Follower
from k8s_sql.watch.hub import WatchHub

__all__ = ["ConfigurationError", "K8sSQLService", "ServerConfig", "describe_address", "member_id"]

#: An endpoint to listen on, with its description.
Endpoint = tuple[str, IStreamServerEndpoint]
#: What gRPC adds to the largest request, as etcd's ``MaxRequestBytesWithOverhead``.
GRPC_OVERHEAD_BYTES = 512 * KiB


class EtcdAPI(Service):
    """Registers the etcd services on ``registry`` when it first starts, the store being open.

    The services need the database's cluster ID for their response headers, known once
    the store is open; the registry serves them from then on.
    """

    def __init__(
        self,
        registry: MethodRegistry,
        config: ServerConfig,
        store: SQLStore,
        hub: WatchHub,
        follower: Follower,
        reactor: Any,
        client_urls: Callable[[], Sequence[str]],
        peer_urls: Callable[[], Sequence[str]],
    ) -> None:
        self.registry = registry
        self.config = config
        self.store = store
        self.hub = hub
        self.follower = follower
        self.reactor = reactor
        self.client_urls = client_urls
        self.peer_urls = peer_urls
        #: Who answers, once started: the cluster and this member.
        self.identity: Identity | None = None

    def startService(self) -> None:
        """Register every etcd service (once)."""
        super().startService()
        if self.identity is not None:
            return
        config, store, reactor = self.config, self.store, self.reactor
        self.identity = identity = Identity(store.cluster_id, member_id(store.cluster_id, config.name))
        health = HealthService()
        self.registry.add_service(health.descriptor, health)
        register(
            self.registry,
            KVService(store, identity, config.max_request_bytes, config.max_txn_ops),
            WatchService(
                self.hub, store, self.follower, identity, reactor, progress_interval=config.progress_notify_interval
            ),
            LeaseService(store, identity, reactor, min_ttl=config.lease_min_ttl),
            MaintenanceService(store, identity, config.emulated_etcd_version, reactor),
            ClusterService(store, identity, config.name, self.client_urls, self.peer_urls, reactor),
            AuthService(store, identity),
        )


class K8sSQLService(StagedService):
    """k8s-sql: the etcd v3 API over a SQL database, as one tree of services.

    @param config: what to serve, from where.
    @param reactor: the reactor to listen and schedule on.
    @param endpoints: replaces the endpoints of ``config.listen`` (given as planned) with
        what to serve the etcd API on instead (a worker process takes the connections its
        supervisor accepted).
    @param housekeeping: whether this server sweeps leases and compacts (one worker process
        of several does).
    @param client_metrics: the ``/metrics`` page of the client ports, instead of this
        server's own (a worker process shows its whole server's).
    @raise ConfigurationError: when ``config`` cannot work (see ``plan_server``).
    """

    log = Logger()

    def __init__(
        self,
        config: ServerConfig,
        reactor: Any,
        *,
        endpoints: Callable[[Sequence[Endpoint]], Sequence[Endpoint]] | None = None,
        housekeeping: bool = True,
        client_metrics: Resource | None = None,
    ) -> None:
        super().__init__()
        self.setName("k8s-sql")
        self.config = config
        self.reactor = reactor
        self.plan: ServerPlan = plan_server(config, reactor)
        #: This server's Prometheus metrics; ``metrics.registry`` can be exposed elsewhere too.
        self.metrics = metrics = ServerMetrics(config.emulated_etcd_version)
        store = SQLStore(
            config.endpoint,
            reactor,
            max_txn_ops=config.max_txn_ops,
            compaction_batch=config.compaction_batch,
            poll_interval=config.poll_interval,
        )
        #: The store served; usable once the server is ready.
        self.store: IStore = store
        #: Its commit signals (``k8s_sql.store.signals``).
        self.signals = store.signals
        observers: list[TransactionObserver] = [metrics.transaction_ended]
        if config.slow_sql_threshold > 0:
            observers.append(SlowTransactionLog(config.slow_sql_threshold))
        self._stage("store", StoreService(store, observers))

        hub = WatchHub()
        metrics.count_watchers(hub)
        follower = Follower(store, hub, reactor)
        self._stage("follower", follower)

        jobs = MultiService()
        if housekeeping:
            sweeper = LeaseSweeper(store, reactor, config.lease_sweep_interval)
            sweeper.setName("lease-sweeper")
            jobs.addService(sweeper)
        if housekeeping and self.plan.compaction is not None:
            compactor = AutoCompactor(store, reactor, self.plan.compaction)
            compactor.setName("compactor")
            jobs.addService(compactor)
        self._stage("housekeeping", jobs)

        registry = MethodRegistry()
        self._stage("etcd", EtcdAPI(registry, config, store, hub, follower, reactor, self.client_urls, self.peer_urls))

        instance = random.SystemRandom().randrange(1, 2**63)
        members = MemberRegistry(
            store,
            reactor,
            instance,
            config.name,
            lambda: member_id(store.cluster_id, config.name),
            self.client_urls,
            self.peer_urls,
            config.member_timeout,
        )
        self._peers = StagedService()
        if self.plan.peer is not None:
            description, endpoint = self.plan.peer
            listener = SignalListener(store, reactor, members.lookup, store.signals.peer)
            listening = ListeningService(description, endpoint, listener)
            listening.setName("listener")
            self._peers.addService(listening)
        signals = PeerSignals(
            store, reactor, instance, config.name, partial(peer_endpoint, reactor, tls=self.plan.peer_tls)
        )
        signals.setName("signals")
        self._peers.addService(signals)
        members.observe(signals.members_changed)
        self._stage("peers", self._peers)
        counted = InstrumentedRegistry(registry, metrics)
        #: The gRPC server factory every etcd API endpoint serves.
        self.factory = GRPCServerFactory(
            counted,
            reactor,
            call_observer=counted.observe,
            max_receive_message_length=config.max_request_bytes + GRPC_OVERHEAD_BYTES,
            keepalive_interval=config.grpc_keepalive_interval,
            keepalive_timeout=config.grpc_keepalive_timeout,
            max_concurrent_streams=config.max_concurrent_streams,
            write_stall_timeout=config.write_stall_timeout,
            abuse_observer=metrics.abused,
        )
        database_health = DatabaseHealth(store, reactor)
        gateway = Gateway(
            counted,
            reactor,
            max_receive_message_length=config.max_request_bytes + GRPC_OVERHEAD_BYTES,
            call_observer=counted.observe,
        )
        pages = metrics_pages(metrics, store, reactor, database_health)
        if client_metrics is not None:
            pages[b"metrics"] = client_metrics
        #: What each etcd API port serves: gRPC, and etcd's JSON gateway over HTTP/1.1.
        self.client_port = ClientPort(self.factory, gateway, client_site(gateway, pages, config.emulated_etcd_version))
        served = self.plan.grpc if endpoints is None else endpoints(self.plan.grpc)
        if config.max_connections:
            served = [
                (description, LimitedEndpoint(endpoint, config.max_connections, reactor, description, metrics.abused))
                for description, endpoint in served
            ]
        self._client = GRPCServer(self.client_port, served, config.shutdown_grace)
        self._stage("client", self._client)

        #: Whether the database answers, as the health pages check it.
        self.database_health = database_health
        site = metrics_site(metrics, store, reactor, database_health)
        self._metrics = StagedService()
        for description, endpoint in self.plan.metrics:
            listening = ListeningService(description, endpoint, site)
            listening.setName(description)
            self._metrics.addService(listening)
        self._stage("metrics", self._metrics)
        self._stage("members", members)
        self._ready = Readiness()

    def _stage(self, name: str, service: IService) -> None:
        service.setName(name)
        self.addService(service)

    @property
    def ports(self) -> list[IListeningPort]:
        """The ports serving the etcd API, once started."""
        return self._client.ports

    @property
    def metrics_ports(self) -> list[IListeningPort]:
        """The ports serving metrics and health checks, once started."""
        return [child.port for child in self._metrics if isinstance(child, ListeningService) and child.port]

    def startService(self) -> None:
        """Start every stage in order; see ``whenReady``."""
        super().startService()
        self.whenStarted().addCallbacks(self._serving, self._not_started)

    def whenReady(self) -> Deferred[list[IListeningPort]]:
        """Fire with the etcd API's listening ports once the server serves, or fail as start-up failed."""
        return self._ready.wait().addCallback(lambda _: self.ports)

    def _serving(self, _: object) -> None:
        for parent, what in (
            (self._client, "the etcd API"),
            (self._metrics, "metrics and health checks"),
            (self._peers, "the peer channel"),
        ):
            for child in parent:
                if isinstance(child, ListeningService) and child.port is not None:
                    self.log.info(
                        "k8s-sql serving {what} on {address} ({endpoint})",
                        what=what,
                        address=describe_address(child.port.getHost()),
                        endpoint=child.description,
                    )
        self._ready.settle(None)

    def _not_started(self, failure: Failure) -> None:
        if failure.check(CancelledError):
            self.log.info("k8s-sql stopped before it started")
        else:
            self.log.critical("k8s-sql could not start: {reason}", reason=failure.getErrorMessage() or failure.type)
        self._ready.settle(failure)

    def addresses(self) -> list[str]:
        """Where the etcd API is served (``host:port`` or a socket path), once ready."""
        return [describe_address(port.getHost()) for port in self.ports]

    def client_urls(self) -> list[str]:
        """The client URLs this member advertises: as configured, else those of its ports."""
        if self.config.advertise_client_urls:
            return list(self.config.advertise_client_urls)
        return [
            address_url(child.port.getHost(), self.plan.tls(child.description, self.config))
            for child in self._client
            if isinstance(child, ListeningService) and child.port is not None
        ]

    def peer_urls(self) -> list[str]:
        """Where peers reach this server's peer port: as configured, else its port's URL.

        @raise ValueError: the port listens on every address and no URL is configured.
        """
        if self.config.advertise_peer_urls:
            return list(self.config.advertise_peer_urls)
        return [
            peer_url(child.port.getHost(), self.plan.peer_serves_tls(self.config))
            for child in self._peers
            if isinstance(child, ListeningService) and child.port is not None
        ]
