"""The etcd ``Cluster`` service: this server as the one member of its cluster.

Several k8s-sql servers may share one database, but they are not raft members of each
other: each lists itself, as its own leader.  Membership cannot change, so the changes are
refused: an unknown member ID as etcd refuses it, this member's own with a reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from k8s_sql.etcd.errors import MEMBER_NOT_FOUND, MEMBER_NOT_LEARNER
from k8s_sql.etcd.header import Identity
from k8s_sql.grpc.interfaces import IServerCall
from k8s_sql.grpc.status import GRPCError, StatusCode
from k8s_sql.proto import rpc_pb2
from k8s_sql.store.interfaces import IChangeLog

#: Why membership changes are refused.
MEMBERSHIP_FIXED = (
    "k8s-sql members are not raft members and cannot be {}: servers join by sharing the database and leave by stopping"
)


class ClusterService:
    """Serves ``etcdserverpb.Cluster`` for one member.

    @param store: where the current revision is read, for response headers.
    @param identity: the cluster and member ids.
    @param name: this member's name.
    @param client_urls: returns the client URLs this member advertises (known once it listens).
    """

    descriptor = rpc_pb2.DESCRIPTOR.services_by_name["Cluster"]

    def __init__(
        self, store: IChangeLog, identity: Identity, name: str, client_urls: Callable[[], Sequence[str]]
    ) -> None:
        self.store = store
        self.identity = identity
        self.name = name
        self.client_urls = client_urls

    def member(self) -> rpc_pb2.Member:
        """This member: it has no peer URLs, having no raft peers."""
        return rpc_pb2.Member(ID=self.identity.member_id, name=self.name, clientURLs=list(self.client_urls()))

    async def member_list(self, request: rpc_pb2.MemberListRequest, call: IServerCall) -> rpc_pb2.MemberListResponse:
        """The members: this server alone."""
        revision = await self.store.current_revision()
        return rpc_pb2.MemberListResponse(header=self.identity.header(revision), members=[self.member()])

    async def member_add(self, request: rpc_pb2.MemberAddRequest, call: IServerCall) -> rpc_pb2.MemberAddResponse:
        """Refused: another server joins by sharing the database."""
        raise GRPCError(StatusCode.UNIMPLEMENTED, MEMBERSHIP_FIXED.format("added"))

    async def member_remove(
        self, request: rpc_pb2.MemberRemoveRequest, call: IServerCall
    ) -> rpc_pb2.MemberRemoveResponse:
        """Refused: unknown IDs are not found; this member leaves by stopping."""
        self._known(request.ID)
        raise GRPCError(StatusCode.UNIMPLEMENTED, MEMBERSHIP_FIXED.format("removed"))

    async def member_update(
        self, request: rpc_pb2.MemberUpdateRequest, call: IServerCall
    ) -> rpc_pb2.MemberUpdateResponse:
        """Refused: unknown IDs are not found; this member has no peer URLs to change."""
        self._known(request.ID)
        raise GRPCError(StatusCode.UNIMPLEMENTED, MEMBERSHIP_FIXED.format("updated"))

    async def member_promote(
        self, request: rpc_pb2.MemberPromoteRequest, call: IServerCall
    ) -> rpc_pb2.MemberPromoteResponse:
        """As etcd: unknown IDs are not found, and this member is no learner to promote."""
        self._known(request.ID)
        raise MEMBER_NOT_LEARNER.exception()

    def _known(self, member_id: int) -> None:
        if member_id != self.identity.member_id:
            raise MEMBER_NOT_FOUND.exception()
