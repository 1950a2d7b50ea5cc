"""Services that start in stages: each child once the ones before it are ready.

Twisted's ``MultiService`` starts its children at once and stops them all at once, which
suits services that do not depend on each other.  The server's do: nothing may listen
before the database is open, and the database must not close while calls still drain.
A ``StagedService`` starts its children in order, each once the one before it is ready
(``IStagedService.whenStarted``), and stops them in reverse order, each once the one
after it has stopped.  ``ListeningService`` is a stage that listens on an endpoint.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred, succeed
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer


class IStagedService(IService):
    """A service that becomes ready some time after ``startService``."""

    def whenStarted() -> Deferred[None]:
        """Fire once the service is ready for the services that depend on it, or fail with
        why it could not start (a ``CancelledError`` when it was stopped first)."""


def when_started(service: IService) -> Deferred[None]:
    """When ``service`` is ready: now, unless it is an ``IStagedService``."""
    staged = IStagedService(service, None)
    return staged.whenStarted() if staged is not None else succeed(None)


class Readiness:
    """The outcome of one start of a service, and the Deferreds waiting for it."""

    def __init__(self) -> None:
        self.outcome: Failure | bool | None = False  # False: not known yet
        self.waiting: list[Deferred[None]] = []

    def wait(self) -> Deferred[None]:
        """Fire once the start has succeeded, or fail as it failed."""
        waiter: Deferred[None] = Deferred()
        if self.outcome is False:
            self.waiting.append(waiter)
        elif isinstance(self.outcome, Failure):
            waiter.errback(self.outcome)
        else:
            waiter.callback(None)
        return waiter

    def settle(self, outcome: Failure | None) -> None:
        """The start ended: ``None`` for success, else why it failed."""
        self.outcome = outcome
        waiting, self.waiting = self.waiting, []
        for waiter in waiting:
            if isinstance(outcome, Failure):
                waiter.errback(outcome)
            else:
                waiter.callback(None)


@implementer(IStagedService)
class StagedService(MultiService):
    """Children started one after another, each once the one before is ready, and stopped
    in reverse order, each once the one after it has stopped.

    The service is ready once every child is; if one fails to start, the later ones are
    not started and ``whenStarted`` fails with its reason.
    """

    log = Logger()

    def __init__(self) -> None:
        super().__init__()
        self._readiness = Readiness()
        self._starting: Deferred[None] | None = None
        self._started: list[IService] = []

    def whenStarted(self) -> Deferred[None]:
        """Fire once every child is ready, or fail as the first that could not start."""
        return self._readiness.wait()

    def startService(self) -> None:
        """Start the children, in order."""
        Service.startService(self)
        if self._readiness.outcome is not False:  # started before
            self._readiness = Readiness()
        self._starting = ensureDeferred(self._start_children())
        self._starting.addBoth(self._settle)

    async def _start_children(self) -> None:
        for child in list(self):
            if not child.running:
                child.startService()
            self._started.append(child)
            await when_started(child)

    def _settle(self, outcome: object) -> None:
        self._starting = None
        self._readiness.settle(outcome if isinstance(outcome, Failure) else None)

    def stopService(self) -> Deferred[None]:
        """Abandon starting, then stop the started children in reverse order."""
        Service.stopService(self)
        return ensureDeferred(self._stop_children())

    async def _stop_children(self) -> None:
        if self._starting is not None:
            self._starting.cancel()
        started, self._started = self._started, []
        for child in reversed(started):
            if child.running:
                try:
                    await maybeDeferred(child.stopService)
                except Exception:
                    self.log.failure("Stopping {service} failed", service=child.name or child)


@implementer(IStagedService)
class StartingService(Service):
    """A service whose start is one asynchronous step (``begin``): ready once it succeeds.

    Stopping gives up a step still running, then ends what it began (``end``).
    """

    def __init__(self) -> None:
        self._readiness = Readiness()
        self._beginning: Deferred[Any] | None = None

    def whenStarted(self) -> Deferred[None]:
        """Fire once the start succeeded, or fail as it failed."""
        return self._readiness.wait()

    def startService(self) -> None:
        """Begin starting."""
        super().startService()
        if self._readiness.outcome is not False:  # started before
            self._readiness = Readiness()
        self._beginning = self.begin()
        self._beginning.addCallbacks(self._begun, self._failed)

    def _begun(self, result: object) -> None:
        self._beginning = None
        self.begun(result)
        self._readiness.settle(None)

    def _failed(self, failure: Failure) -> None:
        self._beginning = None
        self._readiness.settle(failure)

    def stopService(self) -> Deferred[None]:
        """Give up starting, or end what the start began."""
        super().stopService()
        if self._beginning is not None:
            self._beginning.cancel()
        return self.end()

    def begin(self) -> Deferred[Any]:
        """Start; the result is handed to ``begun``."""
        raise NotImplementedError

    def begun(self, result: Any) -> None:
        """The start succeeded with ``result``."""

    def end(self) -> Deferred[None]:
        """Stop what the start began (after a cancelled start, too)."""
        raise NotImplementedError


class ListeningService(StartingService):
    """Listens on ``endpoint`` with ``factory`` while running; ready once listening.

    @param description: the endpoint's description, for logs.
    """

    def __init__(self, description: str, endpoint: IStreamServerEndpoint, factory: IProtocolFactory) -> None:
        super().__init__()
        self.description = description
        self.endpoint = endpoint
        self.factory = factory
        #: The listening port, while listening.
        self.port: IListeningPort | None = None

    def begin(self) -> Deferred[IListeningPort]:
        """Listen."""
        return self.endpoint.listen(self.factory)

    def begun(self, port: IListeningPort) -> None:
        """Keep the port."""
        self.port = port

    def end(self) -> Deferred[None]:
        """Stop listening."""
        port, self.port = self.port, None
        if port is None:
            return succeed(None)
        stopped = port.stopListening()
        return stopped if isinstance(stopped, Deferred) else succeed(None)
