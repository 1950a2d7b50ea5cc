"""Health checks: the database check on a clock, then /health, /readyz and /livez over HTTP
with the database up, and cut by a proxy."""

from __future__ import annotations

import json
from typing import Any, Callable, Iterator

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from k8s_sql.metrics.health import DatabaseHealth
from k8s_sql.store.errors import Unavailable
from tests.ops.support import DatabaseProxy, InProcessServer

Run = Callable[..., Any]


class Revisions:
    """A change log whose ``current_revision`` answers as the test says."""

    def __init__(self) -> None:
        self.answers: list[Deferred[int]] = []
        self.asked = 0

    def current_revision(self) -> Deferred[int]:
        self.asked += 1
        return self.answers.pop(0) if self.answers else succeed(7)


def outcome(deferred: Deferred[Any]) -> Any:
    results: list[Any] = []
    deferred.addBoth(results.append)
    assert results, "not fired"
    return results[0]


def test_healthy_when_the_database_answers() -> None:
    health = DatabaseHealth(Revisions(), Clock())
    assert outcome(health.check()) is None


def test_unhealthy_when_the_database_fails() -> None:
    store = Revisions()
    store.answers.append(fail(Unavailable("database mysql://root@db/k8s is unavailable: refused")))
    assert outcome(DatabaseHealth(store, Clock()).check()) == (
        "the database failed: database mysql://root@db/k8s is unavailable: refused"
    )


def test_unhealthy_when_the_database_does_not_answer_in_time() -> None:
    store, clock = Revisions(), Clock()
    hanging: Deferred[int] = Deferred()
    store.answers.append(hanging)
    health = DatabaseHealth(store, clock, timeout=2.0)
    first = health.check()
    clock.advance(1.0)
    second = health.check()  # shares the query in flight
    clock.advance(1.0)
    assert outcome(first) == "the database did not answer within 2 s"
    assert not second.called
    clock.advance(1.0)
    assert outcome(second) == "the database did not answer within 2 s"
    assert store.asked == 1
    hanging.callback(9)  # the late answer ends the query; the next check asks again
    assert outcome(health.check()) is None
    assert store.asked == 2


@pytest.fixture
def server(run: Run, reactor: Any, backend: str) -> Iterator[InProcessServer]:
    server = InProcessServer(run, reactor, backend)
    yield server
    server.stop()


def test_probes_answer_ok_when_the_database_does(server: InProcessServer) -> None:
    health = server.get("/health")
    assert (health.status, health.headers["content-type"]) == (200, "application/json")
    assert json.loads(health.body) == {"health": "true", "reason": ""}
    for path in ("/readyz", "/livez"):
        probe = server.get(path)
        assert (probe.status, probe.body) == (200, b"ok\n")
    assert server.get("/nothing").status == 404


@pytest.mark.parametrize("backend", ["mysql", "postgres"], indirect=True)
def test_probes_fail_while_the_database_is_cut(run: Run, reactor: Any, backend: str) -> None:
    proxy = DatabaseProxy(backend)
    server = InProcessServer(run, reactor, proxy.url(), poll_interval=0.2)
    try:
        assert server.get("/health").status == 200
        proxy.cut()
        health = server.get("/health")
        assert health.status == 503
        answer = json.loads(health.body)
        assert answer["health"] == "false" and answer["reason"].startswith("the database failed: database ")
        ready = server.get("/readyz")
        assert ready.status == 503 and ready.body.startswith(b"failed: the database failed")
        assert server.get("/livez").status == 200  # restarting would not mend the database
        assert server.scrape()["k8s_sql_database_up", ()] == 0
        proxy.restore()
        assert server.get("/health").status == 200
        assert server.get("/readyz").status == 200
        assert server.scrape()["k8s_sql_database_up", ()] == 1
    finally:
        server.stop()
        proxy.close()
