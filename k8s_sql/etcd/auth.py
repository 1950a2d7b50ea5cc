"""The etcd ``Auth`` service, as etcd answers with authentication disabled, which it always is.

k8s-sql has no users or roles: clients are authenticated by TLS client certificates.  Status
reports authentication disabled, Authenticate fails as etcd's does then (clientv3 carries on
without a token), disabling is a no-op, listings are empty, and every other method is refused.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message

from k8s_sql.etcd.errors import AUTH_NOT_ENABLED
from k8s_sql.etcd.header import Identity
from k8s_sql.grpc.interfaces import IServerCall
from k8s_sql.grpc.status import GRPCError, StatusCode
from k8s_sql.proto import rpc_pb2
from k8s_sql.store.interfaces import IChangeLog

#: Why users, roles and enabling authentication are refused.
AUTH_UNSUPPORTED = (
    "k8s-sql does not implement etcd authentication (users and roles): "
    "authenticate clients with TLS client certificates instead"
)

#: The revision of etcd's authentication data in a fresh etcd.
AUTH_REVISION = 1


class AuthService:
    """Serves ``etcdserverpb.Auth`` with authentication disabled.

    @param store: where the current revision is read, for response headers.
    @param identity: the cluster and member ids put in every response header.
    """

    descriptor = rpc_pb2.DESCRIPTOR.services_by_name["Auth"]

    def __init__(self, store: IChangeLog, identity: Identity) -> None:
        self.store = store
        self.identity = identity

    async def _header(self) -> rpc_pb2.ResponseHeader:
        return self.identity.header(await self.store.current_revision())

    async def auth_status(self, request: rpc_pb2.AuthStatusRequest, call: IServerCall) -> rpc_pb2.AuthStatusResponse:
        """Authentication is disabled."""
        return rpc_pb2.AuthStatusResponse(header=await self._header(), enabled=False, authRevision=AUTH_REVISION)

    async def authenticate(
        self, request: rpc_pb2.AuthenticateRequest, call: IServerCall
    ) -> rpc_pb2.AuthenticateResponse:
        """Fails as etcd's does with authentication disabled."""
        raise AUTH_NOT_ENABLED.exception()

    async def auth_disable(self, request: rpc_pb2.AuthDisableRequest, call: IServerCall) -> rpc_pb2.AuthDisableResponse:
        """Already disabled: succeeds without effect, as etcd's does."""
        return rpc_pb2.AuthDisableResponse(header=await self._header())

    async def user_list(self, request: rpc_pb2.AuthUserListRequest, call: IServerCall) -> rpc_pb2.AuthUserListResponse:
        """No users."""
        return rpc_pb2.AuthUserListResponse(header=await self._header())

    async def role_list(self, request: rpc_pb2.AuthRoleListRequest, call: IServerCall) -> rpc_pb2.AuthRoleListResponse:
        """No roles."""
        return rpc_pb2.AuthRoleListResponse(header=await self._header())

    async def refuse(self, request: Any, call: IServerCall) -> Message:
        """Refused: see ``AUTH_UNSUPPORTED``."""
        raise GRPCError(StatusCode.UNIMPLEMENTED, AUTH_UNSUPPORTED)

    # What would change users or roles, or enable authentication.
    auth_enable = user_add = user_get = user_delete = user_change_password = refuse
    user_grant_role = user_revoke_role = role_add = role_get = role_delete = refuse
    role_grant_permission = role_revoke_permission = refuse
