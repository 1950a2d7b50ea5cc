"""The metrics and health pages of a server with worker processes, served by the supervisor.

``/metrics`` asks every serving worker for its metrics and adds them up as one server's:
counters and histograms are summed, and so are the gauges that count things each worker
holds (calls in flight, watch streams, watchers, memory, descriptors); the gauges every
worker reads from the shared database (revisions, sizes, leases) are the same everywhere,
and are reported once.  The supervisor adds ``k8s_sql_workers`` and
``k8s_sql_worker_restarts_total``.  ``/health`` and ``/readyz`` ask one serving worker
whether the database answers; ``/livez`` answers while the supervisor runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.web.server import Request, Site

from k8s_sql.metrics.web import AnswerPage, HealthPage, MetricsSite, ProbePage, Root
from k8s_sql.workers.channel import ChannelClosed, ControlChannel

if TYPE_CHECKING:
    from k8s_sql.workers.supervisor import WorkerSupervisor

#: Gauges that count what each worker holds: the server's value is their sum.
SUMMED_GAUGES = frozenset(
    {
        "k8s_sql_grpc_calls_in_flight",
        "etcd_debugging_mvcc_watch_stream_total",
        "etcd_debugging_mvcc_watcher_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
    }
)
#: Gauges whose server value is the earliest of the workers'.
EARLIEST_GAUGES = frozenset({"process_start_time_seconds"})
#: Seconds a scrape waits for a worker's metrics.
WORKER_TIMEOUT = 5.0


def merge(expositions: Iterable[str]) -> list[Metric]:
    """The metric families of several processes of one server, as the server's."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in expositions:
        for family in text_string_to_metric_families(text):
            merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            samples = values.setdefault(family.name, {})
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                known = samples.get(key)
                samples[key] = sample.value if known is None else _combine(merged, sample.name, known, sample.value)
    for name, merged in families.items():
        merged.samples = [Sample(sample, dict(labels), value) for (sample, labels), value in values[name].items()]
    return list(families.values())


def _combine(family: Metric, sample: str, known: float, value: float) -> float:
    if sample.endswith("_created") or family.name in EARLIEST_GAUGES:
        return min(known, value)
    if family.type != "gauge" or family.name in SUMMED_GAUGES:
        return known + value
    return max(known, value)


class _Families:
    """Metric families as a registry hands them to an encoder."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        """The families."""
        return iter(self.families)


async def server_metrics(supervisor: WorkerSupervisor, accept: str) -> tuple[str, bytes]:
    """Every worker's metrics added up, and the supervisor's: the content type and body
    a scraper sending ``accept`` gets."""
    asked: list[Deferred[Any]] = []
    for channel in supervisor.ready_channels():
        answer = channel.request("metrics")
        answer.addTimeout(WORKER_TIMEOUT, supervisor.reactor)
        asked.append(answer)
    results = await DeferredList(asked, consumeErrors=True)
    families = merge(text for ok, text in results if ok) + list(supervisor.registry.collect())
    encoder, content_type = choose_encoder(accept)
    return content_type, encoder(_Families(families))


class WorkersMetricsPage(AnswerPage):
    """``/metrics`` of the supervisor: its whole server's (``server_metrics``)."""

    def __init__(self, supervisor: WorkerSupervisor) -> None:
        super().__init__()
        self.supervisor = supervisor

    async def answer(self, request: Request) -> tuple[int, bytes, bytes]:
        """Gather, add up and render."""
        content_type, body = await server_metrics(self.supervisor, _accept(request))
        return 200, content_type.encode("ascii"), body


class SupervisorMetricsPage(AnswerPage):
    """``/metrics`` of a worker's client ports: its whole server's, as its supervisor adds
    them up."""

    def __init__(self, channel: ControlChannel) -> None:
        super().__init__()
        self.channel = channel

    async def answer(self, request: Request) -> tuple[int, bytes, bytes]:
        """Ask the supervisor."""
        answer = await self.channel.request("server-metrics", accept=_accept(request))
        return 200, answer["content_type"].encode("ascii"), answer["body"].encode()


def _accept(request: Request) -> str:
    return (request.getHeader(b"accept") or b"").decode("latin-1")


class WorkersHealth:
    """Whether the database answers, as a serving worker checks it."""

    def __init__(self, supervisor: WorkerSupervisor) -> None:
        self.supervisor = supervisor

    def check(self) -> Deferred[str | None]:
        """Fire with ``None`` when healthy, else with the reason."""
        return ensureDeferred(self._ask())

    async def _ask(self) -> str | None:
        try:
            reason = await self.supervisor.ask_any("health")
        except ChannelClosed:
            return "no worker process is serving"
        return str(reason) if reason else None


def supervisor_site(supervisor: WorkerSupervisor) -> Site:
    """``/metrics``, ``/health``, ``/readyz`` and ``/livez`` for a server with workers."""
    health = WorkersHealth(supervisor)
    root = Root()
    root.putChild(b"metrics", WorkersMetricsPage(supervisor))
    root.putChild(b"health", HealthPage(health))
    root.putChild(b"readyz", ProbePage(health.check))
    root.putChild(b"livez", ProbePage())
    return MetricsSite(root)
