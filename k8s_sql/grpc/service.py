"""A service that listens for gRPC connections and closes them gracefully when stopped."""

from __future__ import annotations

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamServerEndpoint

from k8s_sql.grpc.protocol import GRPCServerFactory


class GRPCServerService(StreamServerEndpointService):
    """Listen on ``endpoint`` with ``factory``; on stop, stop listening, then shut down.

    Stopping waits for calls in flight up to ``grace`` seconds (see
    :meth:`GRPCServerFactory.shutdown`), so a ``MultiService`` stops its gRPC
    server before the store the handlers use.
    """

    def __init__(self, endpoint: IStreamServerEndpoint, factory: GRPCServerFactory, grace: float = 5.0) -> None:
        super().__init__(endpoint, factory)
        self.grace = grace

    def stopService(self) -> Deferred[None]:
        """Stop accepting connections, then close the open ones gracefully."""
        stopped = super().stopService()
        factory: GRPCServerFactory = self.factory
        stopped.addCallback(lambda _: factory.shutdown(self.grace))
        return stopped
