"""What each ``--listen`` endpoint serves: gRPC and etcd's JSON gateway on one port."""

from __future__ import annotations

from twisted.internet.defer import ensureDeferred, gatherResults

from k8s_sql.gateway.site import ClientSite, Gateway
from k8s_sql.gateway.sniff import ProtocolSwitch
from k8s_sql.grpc.protocol import GRPCServerFactory


class ClientPort(ProtocolSwitch):
    """HTTP/2 connections to the gRPC server, HTTP/1.1 ones to the gateway's site.

    @param grpc: the gRPC server.
    @param gateway: the gateway the site serves ``/v3/`` with.
    @param site: the HTTP/1.1 site (``client_site``).
    """

    def __init__(self, grpc: GRPCServerFactory, gateway: Gateway, site: ClientSite) -> None:
        super().__init__(grpc, site)
        self.grpc = grpc
        self.gateway = gateway

    async def shutdown(self, grace: float) -> None:
        """End gRPC and gateway calls as ``GRPCServerFactory.shutdown`` does, then close
        the HTTP/1.1 connections.  Stop listening first."""
        await gatherResults([self.grpc.shutdown(grace), ensureDeferred(self.gateway.shutdown(grace))])
        self.close_http1()
