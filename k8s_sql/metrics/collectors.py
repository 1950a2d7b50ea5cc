"""Every metric of one k8s-sql server, in a ``CollectorRegistry`` of its own.

Names follow etcd's where etcd has the same measure (``grpc_server_*`` as grpc-go's
Prometheus interceptors label them, ``etcd_debugging_mvcc_*``, ``etcd_mvcc_db_*``,
``etcd_disk_backend_commit_duration_seconds``), so that dashboards and alerts written for
etcd work; the others start with ``k8s_sql_``.  Values that live in the database are
sampled when ``/metrics`` is scraped (``sample``); the others are counted as they happen
or read from the running objects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from k8s_sql.grpc import abuse
from k8s_sql.grpc.status import StatusCode
from k8s_sql.store.interfaces import IStore
from k8s_sql.store.model import DatabaseSize

#: The labels grpc-go's Prometheus interceptors (go-grpc-prometheus) put on each call.
CALL_LABELS = ("grpc_type", "grpc_service", "grpc_method")
#: Transaction duration buckets, as etcd's backend commit histogram: 1 ms to 8 s.
TRANSACTION_BUCKETS = tuple(0.001 * 2**n for n in range(14))
#: The kinds of ``k8s_sql_http2_abuse_total``, shown from 0.
ABUSE_KINDS = (
    abuse.RAPID_RESET,
    abuse.PING_FLOOD,
    abuse.SETTINGS_FLOOD,
    abuse.EMPTY_DATA,
    abuse.WINDOW_UPDATE_FLOOD,
    abuse.PRIORITY_FLOOD,
    abuse.CONTINUATION_FLOOD,
    abuse.HEADER_LIST,
    abuse.FRAME_SIZE,
    abuse.WRITE_STALL,
    abuse.MAX_CONCURRENT_STREAMS,
    abuse.BLOCKED_CALLS,
    abuse.MAX_CONNECTIONS,
)
#: Seconds a scrape waits for the database's values before answering without them.
SAMPLE_TIMEOUT = 5.0


class _Children:
    """A labelled metric's children by label values, each looked up once: ``labels()``
    takes a lock and checks the values on every call, a cost paid per gRPC call."""

    def __init__(self, metric: Any) -> None:
        self._labels = metric.labels
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._labels(*values)
        return child


class ServerMetrics:
    """The metrics of one server; each server in a process has its own registry.

    @param etcd_version: the etcd version the server reports (``etcd_server_version``).
    """

    log = Logger()

    def __init__(self, etcd_version: str) -> None:
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)

        def metric(kind: Any, name: str, text: str, labels: Sequence[str] = (), **options: Any) -> Any:
            return kind(name, text, labels, registry=registry, **options)

        # fmt: off
        metric(
            Gauge, "etcd_server_version", "The etcd version this server reports, in the server_version label.",
            ["server_version"],
        ).labels(etcd_version).set(1)
        coded = (*CALL_LABELS, "grpc_code")
        self.calls_started = metric(Counter, "grpc_server_started_total", "gRPC calls started, by method.", CALL_LABELS)
        self.calls_handled = metric(
            Counter, "grpc_server_handled_total", "gRPC calls completed, by method and status code.", coded
        )
        self.call_seconds = metric(
            Histogram, "grpc_server_handling_seconds",
            "How long gRPC calls took until their status was sent, by method and code.", coded,
        )
        self.calls_in_flight = metric(
            Gauge, "k8s_sql_grpc_calls_in_flight",
            "gRPC calls being handled, by method (a Watch or LeaseKeepAlive stream is one call).", CALL_LABELS,
        )
        self.watch_streams = metric(Gauge, "etcd_debugging_mvcc_watch_stream_total", "Open Watch streams.")
        self.watchers = metric(
            Gauge, "etcd_debugging_mvcc_watcher_total",
            "Watchers following live changes (not those still replaying history).",
        )
        self.http2_abuse = metric(
            Counter, "k8s_sql_http2_abuse_total",
            "HTTP/2 clients that broke a limit, by kind (each closed connection, refused connection, "
            "or first refused stream of a connection).", ["kind"],
        )
        self.transaction_seconds = metric(
            Histogram, "k8s_sql_database_transaction_duration_seconds",
            "Database transactions, by role (writer, reader) and outcome (ok, error), from the call to the outcome.",
            ["role", "outcome"], buckets=TRANSACTION_BUCKETS,
        )
        self.commit_seconds = metric(
            Histogram, "etcd_disk_backend_commit_duration_seconds",
            "Write transactions (k8s-sql's equivalent of etcd's backend commits).", buckets=TRANSACTION_BUCKETS,
        )

        self._started = _Children(self.calls_started)
        self._in_flight = _Children(self.calls_in_flight)
        self._handled = _Children(self.calls_handled)
        self._handling_seconds = _Children(self.call_seconds)
        self._transactions = _Children(self.transaction_seconds)
        self._abuse = _Children(self.http2_abuse)
        for kind in ABUSE_KINDS:
            self._abuse(kind)

        self.database_up = metric(
            Gauge, "k8s_sql_database_up", "1 when the database answered the last scrape's queries, else 0."
        )
        self.current_revision = metric(
            Gauge, "etcd_debugging_mvcc_current_revision", "The current revision of the store."
        )
        self.compact_revision = metric(
            Gauge, "etcd_debugging_mvcc_compact_revision", "The revision of the last compaction."
        )
        self.leases = metric(Gauge, "k8s_sql_leases", "Leases granted and not yet revoked or expired.")
        self.db_size = metric(
            Gauge, "etcd_mvcc_db_total_size_in_bytes", "The space the store's tables take in the database."
        )
        self.db_size_in_use = metric(
            Gauge, "etcd_mvcc_db_total_size_in_use_in_bytes", "The part of the store's space that holds live data."
        )
        # fmt: on

    # Counted as they happen

    def call_started(self, labels: tuple[str, str, str]) -> Callable[[], None]:
        """Count a call as started and in flight; returns what to call when its handler is done."""
        self._started(*labels).inc()
        in_flight = self._in_flight(*labels)
        in_flight.inc()
        watch = labels[1:] == ("etcdserverpb.Watch", "Watch")
        if watch:
            self.watch_streams.inc()

        def done() -> None:
            in_flight.dec()
            if watch:
                self.watch_streams.dec()

        return done

    def call_handled(self, labels: tuple[str, str, str], code: StatusCode, seconds: float) -> None:
        """Count a call as completed with ``code`` after ``seconds``."""
        self._handled(*labels, code.name).inc()
        self._handling_seconds(*labels, code.name).observe(seconds)

    def abused(self, kind: str) -> None:
        """Count a client breaking the HTTP/2 limit ``kind`` (the gRPC server's ``abuse_observer``)."""
        self._abuse(kind).inc()

    def transaction_ended(self, writer: bool, name: str, seconds: float, error: BaseException | None) -> None:
        """A ``Database`` transaction observer (see ``Database.observe_transactions``)."""
        self._transactions("writer" if writer else "reader", "ok" if error is None else "error").observe(seconds)
        if writer and error is None:
            self.commit_seconds.observe(seconds)

    # Read from running objects

    def count_watchers(self, hub: Any) -> None:
        """Report ``len(hub)`` as the number of watchers."""
        self.watchers.set_function(lambda: len(hub))

    # Sampled from the database

    async def sample(self, store: IStore, clock: IReactorTime, timeout: float = SAMPLE_TIMEOUT) -> None:
        """Read the database's values into their gauges; ``k8s_sql_database_up`` says whether that worked."""
        queries: list[tuple[Deferred[Any], Callable[[Any], None]]] = [
            (store.current_revision(), self.current_revision.set),
            (store.compact_revision(), self.compact_revision.set),
            (store.leases(), lambda leases: self.leases.set(len(leases))),
            (store.database_size(), self._set_size),
        ]
        for query, _ in queries:
            query.addTimeout(timeout, clock)
        results = await DeferredList([query for query, _ in queries], consumeErrors=True)
        failures = [result for ok, result in results if not ok]
        if failures:
            self.log.warn("Sampling the database for metrics failed: {error}", error=failures[0].getErrorMessage())
            self.database_up.set(0)
            return
        for (_, apply), (_, value) in zip(queries, results, strict=True):
            apply(value)
        self.database_up.set(1)

    def _set_size(self, size: DatabaseSize) -> None:
        self.db_size.set(size.total)
        self.db_size_in_use.set(size.in_use)
