"""The etcd ``Lease`` service: grant, revoke, keep-alive, time-to-live and list, over an ``ILeaseStore``.

Leases are rows in the database with an absolute deadline, so any server sharing the
database can renew any lease, and expiry (``k8s_sql.housekeeping.sweeper``) is a database write
too.  Times come from an injected clock.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

from k8s_sql.etcd.header import Identity
from k8s_sql.grpc.interfaces import IServerCall
from k8s_sql.proto import rpc_pb2
from k8s_sql.store.interfaces import ILeaseStore

#: The shortest TTL granted, in seconds: etcd's with its default 100 ms heartbeat and
#: 1 s election timeout (1.5 election timeouts, rounded up).  Shorter requests get this.
DEFAULT_MIN_TTL = 2


class LeaseService:
    """Serves ``etcdserverpb.Lease`` from a store.

    @param store: where the lease rows live.
    @param identity: the cluster and member ids put in every response header.
    @param clock: the source of ``now`` for deadlines; the sweeper must use the same one.
    @param min_ttl: the shortest TTL granted: a grant asking for less (zero and negative
        included) gets ``min_ttl``, as in etcd.
    """

    descriptor = rpc_pb2.DESCRIPTOR.services_by_name["Lease"]

    def __init__(
        self, store: ILeaseStore, identity: Identity, clock: IReactorTime, min_ttl: int = DEFAULT_MIN_TTL
    ) -> None:
        if min_ttl < 1:
            raise ValueError(f"the minimum lease TTL must be at least 1 s, not {min_ttl!r}")
        self.store = store
        self.identity = identity
        self.clock = clock
        self.min_ttl = min_ttl

    async def header(self) -> rpc_pb2.ResponseHeader:
        """A header with the store's current revision."""
        return self.identity.header(await self.store.current_revision())

    async def lease_grant(self, request: rpc_pb2.LeaseGrantRequest, call: IServerCall) -> rpc_pb2.LeaseGrantResponse:
        """Create a lease: ID 0 picks a free random positive ID; the TTL is raised to ``min_ttl``."""
        ttl = max(request.TTL, self.min_ttl)
        lease = await self.store.lease_grant(request.ID, ttl, self.clock.seconds())
        return rpc_pb2.LeaseGrantResponse(header=await self.header(), ID=lease.id, TTL=lease.granted_ttl)

    async def lease_revoke(self, request: rpc_pb2.LeaseRevokeRequest, call: IServerCall) -> rpc_pb2.LeaseRevokeResponse:
        """Delete a lease and, in one revision, every key attached to it."""
        revision = await self.store.lease_revoke(request.ID)
        return rpc_pb2.LeaseRevokeResponse(header=self.identity.header(revision))

    async def lease_keep_alive(self, call: IServerCall) -> None:
        """Renew leases, answering each request with ``{ID, TTL}`` (TTL 0: no such lease).

        Ends with OK once the client half-closes.  Nothing outlives the call: cancellation
        (RST_STREAM, a lost connection) interrupts whichever await is pending.
        """
        while (request := await call.receive()) is not None:
            # The header is taken before renewing, as etcd does: a lease revoked at some
            # revision is never reported renewed at a later one.
            header = await self.header()
            ttl = await self.store.lease_renew(request.ID, self.clock.seconds())
            await call.send(rpc_pb2.LeaseKeepAliveResponse(header=header, ID=request.ID, TTL=ttl))

    async def lease_time_to_live(
        self, request: rpc_pb2.LeaseTimeToLiveRequest, call: IServerCall
    ) -> rpc_pb2.LeaseTimeToLiveResponse:
        """A lease's remaining and granted TTL, and its keys if asked; TTL -1 when unknown."""
        result = await self.store.lease_time_to_live(request.ID, request.keys, self.clock.seconds())
        response = rpc_pb2.LeaseTimeToLiveResponse(header=await self.header(), ID=request.ID, TTL=result.ttl)
        if result.ttl != -1:
            response.grantedTTL = result.granted_ttl
            response.keys.extend(result.keys)
        return response

    async def lease_leases(self, request: rpc_pb2.LeaseLeasesRequest, call: IServerCall) -> rpc_pb2.LeaseLeasesResponse:
        """The IDs of every lease."""
        ids = await self.store.leases()
        return rpc_pb2.LeaseLeasesResponse(
            header=await self.header(), leases=[rpc_pb2.LeaseStatus(ID=lease_id) for lease_id in ids]
        )
