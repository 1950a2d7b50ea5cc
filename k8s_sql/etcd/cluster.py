"""The etcd ``Cluster`` service: the servers sharing the database, as the members of one cluster.

k8s-sql servers on one database are not raft members of each other, but each registers in
the database's member registry (``k8s_sql.cluster.registry``), and ``MemberList`` lists
the live ones: one member per ``--name`` (the worker processes of one server are one
member), with its client URLs and the peer URLs its commit signals arrive at.  This server
is always listed.  Membership cannot change through the API: a server joins by starting on
the database and leaves by stopping.  Changes are refused: an unknown member ID as etcd
refuses it, a live member's with a reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.internet.interfaces import IReactorTime

from k8s_sql.etcd.errors import MEMBER_NOT_FOUND, MEMBER_NOT_LEARNER
from k8s_sql.etcd.header import Identity
from k8s_sql.grpc.interfaces import IServerCall
from k8s_sql.grpc.status import GRPCError, StatusCode
from k8s_sql.proto import rpc_pb2
from k8s_sql.store.interfaces import IStore

#: Why membership changes are refused.
MEMBERSHIP_FIXED = (
    "k8s-sql members are not raft members and cannot be {}: servers join by sharing the database and leave by stopping"
)


def _union(*lists: Sequence[str]) -> list[str]:
    """The URLs of ``lists``, each once, in order of first appearance."""
    return list(dict.fromkeys(url for urls in lists for url in urls))


class ClusterService:
    """Serves ``etcdserverpb.Cluster`` for one member of the servers sharing a database.

    @param store: the member registry, and the current revision for response headers.
    @param identity: the cluster and member ids.
    @param name: this member's name.
    @param client_urls: returns the client URLs this member advertises (known once it listens).
    @param peer_urls: returns the URLs this member takes commit signals at.
    @param clock: the time registry rows expire in.
    """

    descriptor = rpc_pb2.DESCRIPTOR.services_by_name["Cluster"]

    def __init__(
        self,
        store: IStore,
        identity: Identity,
        name: str,
        client_urls: Callable[[], Sequence[str]],
        peer_urls: Callable[[], Sequence[str]],
        clock: IReactorTime,
    ) -> None:
        self.store = store
        self.identity = identity
        self.name = name
        self.client_urls = client_urls
        self.peer_urls = peer_urls
        self.clock = clock

    def member(self) -> rpc_pb2.Member:
        """This member, as this process knows itself."""
        return rpc_pb2.Member(
            ID=self.identity.member_id,
            name=self.name,
            clientURLs=list(self.client_urls()),
            peerURLs=list(self.peer_urls()),
        )

    async def members(self) -> list[rpc_pb2.Member]:
        """The live members by ID: the processes registered with one name are one member."""
        by_name: dict[str, rpc_pb2.Member] = {self.name: self.member()}
        for record in await self.store.live_members(self.clock.seconds()):
            member = by_name.setdefault(record.name, rpc_pb2.Member(ID=record.member_id, name=record.name))
            member.clientURLs[:] = _union(member.clientURLs, record.client_urls)
            member.peerURLs[:] = _union(member.peerURLs, record.peer_urls)
        return sorted(by_name.values(), key=lambda member: member.ID)

    async def member_list(self, request: rpc_pb2.MemberListRequest, call: IServerCall) -> rpc_pb2.MemberListResponse:
        """The live members."""
        members = await self.members()
        revision = await self.store.current_revision()
        return rpc_pb2.MemberListResponse(header=self.identity.header(revision), members=members)

    async def member_add(self, request: rpc_pb2.MemberAddRequest, call: IServerCall) -> rpc_pb2.MemberAddResponse:
        """Refused: another server joins by sharing the database."""
        raise GRPCError(StatusCode.UNIMPLEMENTED, MEMBERSHIP_FIXED.format("added"))

    async def member_remove(
        self, request: rpc_pb2.MemberRemoveRequest, call: IServerCall
    ) -> rpc_pb2.MemberRemoveResponse:
        """Refused: unknown IDs are not found; a member leaves by stopping."""
        await self._known(request.ID)
        raise GRPCError(StatusCode.UNIMPLEMENTED, MEMBERSHIP_FIXED.format("removed"))

    async def member_update(
        self, request: rpc_pb2.MemberUpdateRequest, call: IServerCall
    ) -> rpc_pb2.MemberUpdateResponse:
        """Refused: unknown IDs are not found; a member's URLs are those it starts with."""
        await self._known(request.ID)
        raise GRPCError(StatusCode.UNIMPLEMENTED, MEMBERSHIP_FIXED.format("updated"))

    async def member_promote(
        self, request: rpc_pb2.MemberPromoteRequest, call: IServerCall
    ) -> rpc_pb2.MemberPromoteResponse:
        """As etcd: unknown IDs are not found, and no member is a learner to promote."""
        await self._known(request.ID)
        raise MEMBER_NOT_LEARNER.exception()

    async def _known(self, member_id: int) -> None:
        if member_id not in {member.ID for member in await self.members()}:
            raise MEMBER_NOT_FOUND.exception()
