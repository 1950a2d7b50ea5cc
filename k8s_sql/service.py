"""The whole server as one Twisted service, for ``twistd``, the console script and embedding.

    from k8s_sql.service import K8sSQLService, ServerConfig

    server = K8sSQLService(ServerConfig(endpoint="sqlite:///state.db"), reactor)
    server.setServiceParent(application)      # or server.startService()
    ports = await server.whenReady()

Constructing the service checks the configuration (``ConfigurationError``): database URL,
endpoint descriptions, TLS files, versions, compaction policy.  Start-up opens the database
(creating the schema on first use) before anything listens; shut-down stops listening,
sends GOAWAY, lets calls in flight finish for ``shutdown_grace`` seconds, then closes the
database.  See ``docs/embedding.md``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from twisted.application.service import MultiService
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IAddress, IListeningPort, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from k8s_sql.etcd.auth import AuthService
from k8s_sql.etcd.cluster import ClusterService
from k8s_sql.etcd.header import Identity
from k8s_sql.etcd.kv import DEFAULT_MAX_REQUEST_BYTES, KVService
from k8s_sql.etcd.lease import DEFAULT_MIN_TTL, LeaseService
from k8s_sql.etcd.maintenance import MaintenanceService
from k8s_sql.etcd.services import register
from k8s_sql.etcd.watch import DEFAULT_PROGRESS_INTERVAL, WatchService
from k8s_sql.grpc.health import HealthService
from k8s_sql.grpc.protocol import KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT, GRPCServerFactory, KiB
from k8s_sql.grpc.registry import MethodRegistry
from k8s_sql.grpc.tls import TLSConfigurationError, TLSEndpointParser, server_endpoint
from k8s_sql.housekeeping.compactor import AutoCompactor, Retention, retention_policy
from k8s_sql.housekeeping.sweeper import DEFAULT_INTERVAL as DEFAULT_SWEEP_INTERVAL
from k8s_sql.housekeeping.sweeper import LeaseSweeper
from k8s_sql.metrics.calls import InstrumentedRegistry
from k8s_sql.metrics.collectors import ServerMetrics
from k8s_sql.metrics.health import DatabaseHealth
from k8s_sql.metrics.web import metrics_site
from k8s_sql.slowsql import SlowTransactionLog
from k8s_sql.store import open_store
from k8s_sql.store.checks import DEFAULT_MAX_TXN_OPS
from k8s_sql.store.compaction import DEFAULT_BATCH as DEFAULT_COMPACTION_BATCH
from k8s_sql.store.interfaces import IStore
from k8s_sql.store.pool import load_dialect
from k8s_sql.store.signals import DEFAULT_POLL_INTERVAL
from k8s_sql.store.url import DatabaseURL
from k8s_sql.watch.follower import Follower
from k8s_sql.watch.hub import WatchHub

DEFAULT_LISTEN = "tcp:2379:interface=127.0.0.1"
DEFAULT_ENDPOINT = "sqlite:///k8s-sql.db"
#: The etcd version reported by default: kube-apiserver enables features by it.
DEFAULT_ETCD_VERSION = "3.6.15"
#: What gRPC adds to the largest request, as etcd's ``MaxRequestBytesWithOverhead``.
GRPC_OVERHEAD_BYTES = 512 * KiB
#: The schemes of advertised client URLs, as etcd accepts them.
CLIENT_URL_SCHEMES = ("http", "https", "unix", "unixs")


@dataclass
class ServerConfig:
    """Everything the server is configured with; the command line fills one of these."""

    #: Twisted server endpoint descriptions to serve the etcd API on.
    listen: list[str] = field(default_factory=lambda: [DEFAULT_LISTEN])
    #: The database URL (``sqlite:///path``, ``mysql://…``, ``postgres://…``).
    endpoint: str = DEFAULT_ENDPOINT
    #: This member's name; its member ID is derived from it and the cluster ID.
    name: str = "default"
    #: TLS on every ``listen`` endpoint: the server certificate (PEM, chain after it) ...
    cert_file: str | None = None
    #: ... and its private key (PEM, unencrypted).
    key_file: str | None = None
    #: CA certificates (PEM) client certificates are verified against.
    trusted_ca_file: str | None = None
    #: Refuse clients without a certificate signed by ``trusted_ca_file``.
    client_cert_auth: bool = False
    #: Endpoint descriptions to serve ``/metrics``, ``/health``, ``/readyz`` and ``/livez`` on.
    metrics_listen: list[str] = field(default_factory=list)
    #: The client URLs this member advertises (MemberList); empty: derived from the listening ports.
    advertise_client_urls: list[str] = field(default_factory=list)
    #: The etcd version reported to clients (Maintenance.Status, ``etcd_server_version``).
    emulated_etcd_version: str = DEFAULT_ETCD_VERSION
    #: ``periodic`` or ``revision``, as etcd's ``--auto-compaction-mode``.
    auto_compaction_mode: str = "periodic"
    #: As etcd's ``--auto-compaction-retention``: a duration or hours (periodic), revisions (revision); "0" is off.
    auto_compaction_retention: str = "0"
    #: Revisions of the log one physical compaction step examines (one short transaction).
    compaction_batch: int = DEFAULT_COMPACTION_BATCH
    #: The most operations in one branch of a transaction, as etcd's ``--max-txn-ops``.
    max_txn_ops: int = DEFAULT_MAX_TXN_OPS
    #: Seconds between polls for commits made by other servers sharing the database.
    poll_interval: float = DEFAULT_POLL_INTERVAL
    #: Seconds between progress notifications to watches that asked for them.
    progress_notify_interval: float = DEFAULT_PROGRESS_INTERVAL
    #: The shortest lease TTL granted, in seconds.
    lease_min_ttl: int = DEFAULT_MIN_TTL
    #: Seconds between sweeps for expired leases.
    lease_sweep_interval: float = DEFAULT_SWEEP_INTERVAL
    #: The largest write request accepted, as etcd's ``--max-request-bytes``.
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    #: Log database transactions that take at least this many seconds; 0 logs none.
    slow_sql_threshold: float = 1.0
    #: Seconds calls in flight may take to finish when the server stops.
    shutdown_grace: float = 5.0
    #: Seconds without hearing from a client before it is PINGed; 0: never (etcd's --grpc-keepalive-interval).
    grpc_keepalive_interval: float = KEEPALIVE_INTERVAL
    #: Seconds a PINGed client has to answer before its connection is closed (--grpc-keepalive-timeout).
    grpc_keepalive_timeout: float = KEEPALIVE_TIMEOUT


class ConfigurationError(ValueError):
    """The configuration cannot work; the message says why, in one line."""


@dataclass(frozen=True)
class ServerPlan:
    """A checked configuration: the endpoints to listen on and the compaction policy."""

    #: (description, endpoint) for the etcd API.
    grpc: list[tuple[str, IStreamServerEndpoint]]
    #: (description, endpoint) for the metrics site.
    metrics: list[tuple[str, IStreamServerEndpoint]]
    #: The auto-compaction policy, or ``None`` when it is off.
    compaction: Retention | None


def plan_server(config: ServerConfig, reactor: Any) -> ServerPlan:
    """Check ``config`` without touching the network or the database.

    Raises ``ConfigurationError`` for a bad database URL (or a missing driver), a bad
    endpoint description, unusable TLS files or options, a bad version or client URL, or
    a bad compaction policy.
    """
    if not config.listen:
        raise ConfigurationError("nothing to listen on: give at least one listen endpoint")
    try:
        load_dialect(DatabaseURL.parse(config.endpoint))
    except ValueError as error:
        raise ConfigurationError(str(error)) from None
    if not re.fullmatch(r"\d+\.\d+\.\d+", config.emulated_etcd_version):
        raise ConfigurationError(
            f"the emulated etcd version must look like 3.6.4, not {config.emulated_etcd_version!r}"
        )
    for url in config.advertise_client_urls:
        _check_client_url(url)
    try:
        compaction = retention_policy(config.auto_compaction_mode, config.auto_compaction_retention)
    except ValueError as error:
        raise ConfigurationError(str(error)) from None
    tls = config.cert_file is not None or config.key_file is not None
    grpc = []
    for description in config.listen:
        if tls and description.startswith(TLSEndpointParser.prefix + ":"):
            raise ConfigurationError(
                f"{description!r} has TLS of its own: do not combine h2tls: with a certificate file"
            )
        grpc.append(
            (
                description,
                _endpoint(
                    description,
                    server_endpoint,
                    reactor,
                    description,
                    cert_file=config.cert_file,
                    key_file=config.key_file,
                    trusted_ca_file=config.trusted_ca_file,
                    client_cert_auth=config.client_cert_auth,
                ),
            )
        )
    metrics = [
        (description, _endpoint(description, serverFromString, reactor, description))
        for description in config.metrics_listen
    ]
    return ServerPlan(grpc, metrics, compaction)


def _endpoint(
    description: str, build: Callable[..., IStreamServerEndpoint], *args: Any, **kwargs: Any
) -> IStreamServerEndpoint:
    """``build(*args, **kwargs)``, its failures turned into one-line ``ConfigurationError``s."""
    try:
        return build(*args, **kwargs)
    except TLSConfigurationError as error:
        raise ConfigurationError(f"TLS: {error}") from None
    except OSError as error:
        raise ConfigurationError(f"cannot read TLS file {error.filename}: {error.strerror}") from None
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigurationError(f"bad endpoint description {description!r}: {error}") from None


def _check_client_url(url: str) -> None:
    """Refuse a client URL etcd would refuse: http(s)://host:port, or unix(s)://path."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError as error:
        raise ConfigurationError(f"bad client URL {url!r}: {error}") from None
    if parts.scheme not in CLIENT_URL_SCHEMES or not parts.netloc or (parts.scheme.startswith("http") and port is None):
        raise ConfigurationError(f"bad client URL {url!r}: use http://host:port or https://host:port")


def member_id(cluster_id: int, name: str) -> int:
    """A stable, positive 64-bit member ID for the member ``name`` of a cluster."""
    digest = hashlib.sha256(f"{cluster_id}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1 or 1


def describe_address(address: IAddress) -> str:
    """``host:port`` for an IP address, the path for a UNIX socket, else its repr."""
    if isinstance(address, (IPv4Address, IPv6Address)):
        host = f"[{address.host}]" if isinstance(address, IPv6Address) else address.host
        return f"{host}:{address.port}"
    if isinstance(address, UNIXAddress):
        return str(address.name, "utf-8") if isinstance(address.name, bytes) else str(address.name)
    return repr(address)


class K8sSQLService(MultiService):
    """k8s-sql: the etcd v3 API over a SQL database, as one service.

    @param config: what to serve, from where.
    @param reactor: the reactor to listen and schedule on.
    @raise ConfigurationError: when ``config`` cannot work (see ``plan_server``).
    """

    log = Logger()

    def __init__(self, config: ServerConfig, reactor: Any) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.plan = plan_server(config, reactor)
        #: This server's Prometheus metrics; ``metrics.registry`` can be exposed elsewhere too.
        self.metrics = ServerMetrics(config.emulated_etcd_version)
        self.store: IStore | None = None
        self.factory: GRPCServerFactory | None = None
        #: The ports serving the etcd API, once started.
        self.ports: list[IListeningPort] = []
        #: The ports serving metrics and health checks, once started.
        self.metrics_ports: list[IListeningPort] = []
        self._outcome: Failure | list[IListeningPort] | None = None
        self._waiting: list[Deferred[list[IListeningPort]]] = []
        self._starting: Deferred[list[IListeningPort]] | None = None

    def startService(self) -> None:
        """Open the database, then listen; see ``whenReady``."""
        super().startService()
        self._starting = ensureDeferred(self._start())
        self._starting.addBoth(self._started)

    def whenReady(self) -> Deferred[list[IListeningPort]]:
        """Fire with the etcd API's listening ports once the server serves, or fail as start-up failed."""
        waiter: Deferred[list[IListeningPort]] = Deferred()
        if self._outcome is None:
            self._waiting.append(waiter)
        else:
            waiter.callback(self._outcome)
        return waiter

    def addresses(self) -> list[str]:
        """Where the etcd API is served (``host:port`` or a socket path), once ready."""
        return [describe_address(port.getHost()) for port in self.ports]

    def client_urls(self) -> list[str]:
        """The client URLs this member advertises: as configured, else those of its ports."""
        if self.config.advertise_client_urls:
            return list(self.config.advertise_client_urls)
        urls = []
        for (description, _), port in zip(self.plan.grpc, self.ports, strict=False):
            tls = self.config.cert_file is not None or description.startswith(TLSEndpointParser.prefix + ":")
            address = port.getHost()
            if isinstance(address, UNIXAddress):
                urls.append(f"{'unixs' if tls else 'unix'}://{describe_address(address)}")
            else:
                urls.append(f"{'https' if tls else 'http'}://{describe_address(address)}")
        return urls

    async def _start(self) -> list[IListeningPort]:
        config, reactor, metrics = self.config, self.reactor, self.metrics
        self.store = store = await open_store(
            config.endpoint,
            reactor,
            max_txn_ops=config.max_txn_ops,
            compaction_batch=config.compaction_batch,
            poll_interval=config.poll_interval,
        )
        store.database.observe_transactions(metrics.transaction_ended)
        if config.slow_sql_threshold > 0:
            store.database.observe_transactions(SlowTransactionLog(config.slow_sql_threshold))
        identity = Identity(store.cluster_id, member_id(store.cluster_id, config.name))
        hub = WatchHub()
        metrics.count_watchers(hub)
        follower = Follower(store, hub, reactor)
        follower.setServiceParent(self)
        LeaseSweeper(store, reactor, config.lease_sweep_interval).setServiceParent(self)
        if self.plan.compaction is not None:
            AutoCompactor(store, reactor, self.plan.compaction).setServiceParent(self)
        registry = MethodRegistry()
        health = HealthService()
        registry.add_service(health.descriptor, health)
        register(
            registry,
            KVService(store, identity, config.max_request_bytes),
            WatchService(hub, store, follower, identity, reactor, progress_interval=config.progress_notify_interval),
            LeaseService(store, identity, reactor, min_ttl=config.lease_min_ttl),
            MaintenanceService(store, identity, config.emulated_etcd_version),
            ClusterService(store, identity, config.name, self.client_urls),
            AuthService(store, identity),
        )
        counted = InstrumentedRegistry(registry, metrics)
        self.factory = GRPCServerFactory(
            counted,
            reactor,
            call_observer=counted.observe,
            max_receive_message_length=config.max_request_bytes + GRPC_OVERHEAD_BYTES,
            keepalive_interval=config.grpc_keepalive_interval,
            keepalive_timeout=config.grpc_keepalive_timeout,
        )
        for description, endpoint in self.plan.grpc:
            port = await endpoint.listen(self.factory)
            self.ports.append(port)
            self.log.info(
                "k8s-sql serving the etcd API on {address} ({endpoint})",
                address=describe_address(port.getHost()),
                endpoint=description,
            )
        site = metrics_site(metrics, store, reactor, DatabaseHealth(store, reactor))
        for description, endpoint in self.plan.metrics:
            port = await endpoint.listen(site)
            self.metrics_ports.append(port)
            self.log.info(
                "k8s-sql serving metrics and health checks on {address} ({endpoint})",
                address=describe_address(port.getHost()),
                endpoint=description,
            )
        return self.ports

    def _started(self, outcome: Failure | list[IListeningPort]) -> None:
        if isinstance(outcome, Failure) and outcome.check(CancelledError):
            self.log.info("k8s-sql stopped before it started")
        elif isinstance(outcome, Failure):
            self.log.critical("k8s-sql could not start: {reason}", reason=outcome.getErrorMessage() or outcome.type)
        self._outcome = outcome
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.callback(outcome)

    def stopService(self) -> Deferred[None]:
        """Stop listening, drain calls in flight, stop the background services, close the database."""
        return ensureDeferred(self._stop())

    async def _stop(self) -> None:
        if self._starting is not None and not self._starting.called:
            self._starting.cancel()
        for port in self.ports + self.metrics_ports:
            await port.stopListening()
        self.ports, self.metrics_ports = [], []
        if self.factory is not None:
            await self.factory.shutdown(self.config.shutdown_grace)
        await super().stopService()
        if self.store is not None:
            await self.store.close()
            self.store = None
