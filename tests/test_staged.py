"""Staged services: children start in order, each once the one before is ready, and stop in reverse."""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService, Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure
from zope.interface import implementer
from zope.interface.verify import verifyObject

from k8s_sql.staged import IStagedService, ListeningService, Readiness, StagedService


@implementer(IStagedService)
class Stage(Service):
    """A stage that is ready, and has stopped, when the test says."""

    def __init__(self, name: str, journal: list[str]) -> None:
        self.setName(name)
        self.journal = journal
        self.readiness = Readiness()
        self.stopped: Deferred[None] = Deferred()

    def whenStarted(self) -> Deferred[None]:
        return self.readiness.wait()

    def ready(self, failure: Failure | None = None) -> None:
        """The stage is ready, or failed to start with ``failure``."""
        self.readiness.settle(failure)

    def startService(self) -> None:
        super().startService()
        self.journal.append(f"start {self.name}")

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self.journal.append(f"stop {self.name}")
        return self.stopped


def staged(journal: list[str], *names: str) -> tuple[StagedService, list[Stage]]:
    parent = StagedService()
    stages = [Stage(name, journal) for name in names]
    for stage in stages:
        stage.setServiceParent(parent)
    return parent, stages


def outcome(deferred: Deferred[Any]) -> list[Any]:
    seen: list[Any] = []
    deferred.addBoth(seen.append)
    return seen


def test_provides_the_interfaces() -> None:
    verifyObject(IStagedService, StagedService())
    verifyObject(IService, StagedService())


def test_each_child_starts_once_the_one_before_is_ready() -> None:
    journal: list[str] = []
    parent, (first, second, third) = staged(journal, "first", "second", "third")
    parent.startService()
    ready = outcome(parent.whenStarted())
    assert journal == ["start first"]
    first.ready()
    assert journal == ["start first", "start second"]
    second.ready()
    assert ready == []
    third.ready()
    assert journal == ["start first", "start second", "start third"] and ready == [None]


def test_plain_services_are_ready_at_once() -> None:
    parent = StagedService()
    plain = Service()
    plain.setServiceParent(parent)
    parent.startService()
    assert plain.running and outcome(parent.whenStarted()) == [None]


def test_a_child_that_cannot_start_stops_the_stages_after_it() -> None:
    journal: list[str] = []
    parent, (first, second) = staged(journal, "first", "second")
    parent.startService()
    first.ready(Failure(OSError("port in use")))
    failed = outcome(parent.whenStarted())
    assert journal == ["start first"] and isinstance(failed[0], Failure) and failed[0].check(OSError)


def test_children_stop_in_reverse_order_each_after_the_next_has_stopped() -> None:
    journal: list[str] = []
    parent, stages = staged(journal, "first", "second", "third")
    parent.startService()
    for stage in stages:
        stage.ready()
    journal.clear()
    stopped = outcome(parent.stopService())
    assert journal == ["stop third"]
    stages[2].stopped.callback(None)
    assert journal == ["stop third", "stop second"]
    stages[1].stopped.callback(None)
    stages[0].stopped.callback(None)
    assert journal == ["stop third", "stop second", "stop first"] and stopped == [None]


def test_stopping_while_starting_abandons_the_rest_and_stops_what_started() -> None:
    journal: list[str] = []
    parent, (first, second) = staged(journal, "first", "second")
    parent.startService()
    ready = outcome(parent.whenStarted())
    first.stopped.callback(None)
    stopped = outcome(parent.stopService())
    assert journal == ["start first", "stop first"] and stopped == [None]
    assert isinstance(ready[0], Failure) and ready[0].check(CancelledError)
    first.ready()
    assert not second.running


@implementer(IListeningPort)
class Port:
    def __init__(self) -> None:
        self.listening = True

    def startListening(self) -> None:
        self.listening = True

    def stopListening(self) -> Deferred[None]:
        self.listening = False
        return succeed(None)

    def getHost(self) -> None:
        return None


@implementer(IStreamServerEndpoint)
class Endpoint:
    def __init__(self) -> None:
        self.listening: Deferred[IListeningPort] = Deferred()

    def listen(self, factory: Factory) -> Deferred[IListeningPort]:
        return self.listening


def test_a_listening_service_is_ready_once_it_listens_and_stops_listening_on_stop() -> None:
    endpoint = Endpoint()
    service = ListeningService("tcp:0", endpoint, Factory())
    service.startService()
    ready = outcome(service.whenStarted())
    assert ready == [] and service.port is None
    port = Port()
    endpoint.listening.callback(port)
    assert ready == [None] and service.port is port
    assert outcome(service.stopService()) == [None] and not port.listening and service.port is None


def test_a_listening_service_that_cannot_listen_fails_to_start() -> None:
    endpoint = Endpoint()
    service = ListeningService("tcp:0", endpoint, Factory())
    service.startService()
    endpoint.listening.errback(Failure(OSError("address in use")))
    failed = outcome(service.whenStarted())
    assert isinstance(failed[0], Failure) and failed[0].check(OSError)
