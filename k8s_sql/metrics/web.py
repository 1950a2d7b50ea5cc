"""The HTTP site of ``--metrics-listen``; its pages are served on the client port too (``k8s_sql.gateway``).

* ``/metrics``: Prometheus text (or OpenMetrics, as the scraper's ``Accept`` asks), the
  database's values sampled first;
* ``/health``: etcd's answer, ``{"health":"true","reason":""}``, or 503 with
  ``"health":"false"`` and the reason when the database does not answer in time;
* ``/readyz``: ``ok``, or 503 when the database does not answer (take the server out of
  a load balancer);
* ``/livez``: ``ok`` while the process serves; it does not check the database, because
  restarting k8s-sql does not mend a database (a liveness probe must not restart every
  server when the shared database has an outage).

Scrapes and probes are not access-logged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client.exposition import choose_encoder
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from k8s_sql.metrics.collectors import ServerMetrics
from k8s_sql.metrics.health import DatabaseHealth
from k8s_sql.store.interfaces import IStore

TEXT = b"text/plain; charset=utf-8"


class AnswerPage(Resource):
    """A leaf whose answer is computed asynchronously by ``answer(request)``."""

    isLeaf = True
    log = Logger()

    def render_GET(self, request: Request) -> int:
        """Start the answer; it is written when ready, unless the client left."""
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def respond(outcome: tuple[int, bytes, bytes]) -> None:
            if not gone:
                code, content_type, body = outcome
                request.setResponseCode(code)
                request.setHeader(b"content-type", content_type)
                request.write(body)
                request.finish()

        answer = ensureDeferred(self.answer(request))
        answer.addCallback(respond)
        answer.addErrback(lambda failure: self.log.failure("Answering {uri} failed", failure, uri=request.uri))
        return NOT_DONE_YET

    async def answer(self, request: Request) -> tuple[int, bytes, bytes]:
        """The response code, content type and body."""
        raise NotImplementedError


class MetricsPage(AnswerPage):
    """``/metrics``."""

    def __init__(self, metrics: ServerMetrics, store: IStore, clock: IReactorTime) -> None:
        super().__init__()
        self.metrics = metrics
        self.store = store
        self.clock = clock

    async def answer(self, request: Request) -> tuple[int, bytes, bytes]:
        """Sample the database, then render every metric."""
        await self.metrics.sample(self.store, self.clock)
        accept = (request.getHeader(b"accept") or b"").decode("latin-1")
        encoder, content_type = choose_encoder(accept)
        return 200, content_type.encode("ascii"), encoder(self.metrics.registry)


class HealthCheck(Protocol):
    """What the health pages ask: ``DatabaseHealth``, or a check run elsewhere."""

    def check(self) -> Deferred[str | None]:
        """Fire with ``None`` when healthy, else with the reason."""


class HealthPage(AnswerPage):
    """``/health``, as etcd answers it."""

    def __init__(self, health: HealthCheck) -> None:
        super().__init__()
        self.health = health

    async def answer(self, request: Request) -> tuple[int, bytes, bytes]:
        """200 and ``"health":"true"``, or 503 and the reason."""
        reason = await self.health.check()
        body = json.dumps(
            {"health": "false" if reason else "true", "reason": reason or ""}, separators=(",", ":")
        ).encode()
        return 503 if reason else 200, b"application/json", body


class ProbePage(AnswerPage):
    """``/readyz`` (``check`` is the database check) or ``/livez`` (no check)."""

    def __init__(self, check: Callable[[], Deferred[str | None]] | None = None) -> None:
        super().__init__()
        self.check = check

    async def answer(self, request: Request) -> tuple[int, bytes, bytes]:
        """200 ``ok``, or 503 with the reason."""
        reason = await self.check() if self.check is not None else None
        if reason:
            return 503, TEXT, f"failed: {reason}\n".encode()
        return 200, TEXT, b"ok\n"


class Root(Resource):
    """The site's root: its children, and 404 for anything else."""

    def getChild(self, path: bytes, request: Request) -> IResource:
        """No such page."""
        return notFound()


class MetricsSite(Site):
    """A site that does not log each request."""

    noisy = False

    def log(self, request: Any) -> None:
        """Scrapes and probes come every few seconds: keep them out of the log."""


def metrics_pages(
    metrics: ServerMetrics, store: IStore, clock: IReactorTime, health: DatabaseHealth
) -> dict[bytes, Resource]:
    """``/metrics``, ``/health``, ``/readyz`` and ``/livez``, by name."""
    return {
        b"metrics": MetricsPage(metrics, store, clock),
        b"health": HealthPage(health),
        b"readyz": ProbePage(health.check),
        b"livez": ProbePage(),
    }


def metrics_site(metrics: ServerMetrics, store: IStore, clock: IReactorTime, health: DatabaseHealth) -> Site:
    """The site serving ``/metrics``, ``/health``, ``/readyz`` and ``/livez``."""
    root = Root()
    for name, page in metrics_pages(metrics, store, clock, health).items():
        root.putChild(name, page)
    return MetricsSite(root)
