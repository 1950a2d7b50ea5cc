"""A gRPC server as a Twisted service: its listening endpoints, and a graceful drain on stop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint

from k8s_sql.staged import ListeningService, StagedService


class GRPCServer(StagedService):
    """Serves ``factory`` on every endpoint, each a child named by its description.

    Ready once every endpoint listens.  Stopping stops listening on all of them, then closes
    the connections gracefully: GOAWAY at once, calls in flight may finish within ``grace``
    seconds (see :meth:`GRPCServerFactory.shutdown`).  In a staged server it stops before
    the store its handlers use.

    @param factory: an ``IProtocolFactory`` with ``shutdown(grace)``, as
        ``GRPCServerFactory`` has: that factory, or one serving it among other protocols.
    @param endpoints: ``(description, endpoint)`` pairs.
    """

    def __init__(
        self, factory: Any, endpoints: Sequence[tuple[str, IStreamServerEndpoint]], grace: float = 5.0
    ) -> None:
        super().__init__()
        self.factory = factory
        self.grace = grace
        for description, endpoint in endpoints:
            listening = ListeningService(description, endpoint, factory)
            listening.setName(description)
            listening.setServiceParent(self)

    @property
    def ports(self) -> list[IListeningPort]:
        """The ports listening now, in the order of the endpoints."""
        return [child.port for child in self if isinstance(child, ListeningService) and child.port is not None]

    def stopService(self) -> Deferred[None]:
        """Stop listening everywhere, then drain the connections."""
        return ensureDeferred(self._stop())

    async def _stop(self) -> None:
        await super().stopService()
        await self.factory.shutdown(self.grace)
