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
from k8s_sql.etcd.rpc import register_unary, store_call
from k8s_sql.grpc.interfaces import IMethodRegistry, IServerCall
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

#: Methods that would change users, roles or enable authentication: request types.
_REFUSED: dict[str, type[Message]] = {
    "AuthEnable": rpc_pb2.AuthEnableRequest,
    "UserAdd": rpc_pb2.AuthUserAddRequest,
    "UserGet": rpc_pb2.AuthUserGetRequest,
    "UserDelete": rpc_pb2.AuthUserDeleteRequest,
    "UserChangePassword": rpc_pb2.AuthUserChangePasswordRequest,
    "UserGrantRole": rpc_pb2.AuthUserGrantRoleRequest,
    "UserRevokeRole": rpc_pb2.AuthUserRevokeRoleRequest,
    "RoleAdd": rpc_pb2.AuthRoleAddRequest,
    "RoleGet": rpc_pb2.AuthRoleGetRequest,
    "RoleDelete": rpc_pb2.AuthRoleDeleteRequest,
    "RoleGrantPermission": rpc_pb2.AuthRoleGrantPermissionRequest,
    "RoleRevokePermission": rpc_pb2.AuthRoleRevokePermissionRequest,
}


class AuthService:
    """Serves ``etcdserverpb.Auth`` with authentication disabled.

    @param store: where the current revision is read, for response headers.
    @param identity: the cluster and member ids put in every response header.
    """

    def __init__(self, store: IChangeLog, identity: Identity) -> None:
        self.store = store
        self.identity = identity

    def register(self, registry: IMethodRegistry) -> None:
        """Add the Auth methods to ``registry``."""
        register_unary(
            registry,
            "etcdserverpb.Auth",
            {
                "AuthStatus": (self.auth_status, rpc_pb2.AuthStatusRequest),
                "Authenticate": (self.authenticate, rpc_pb2.AuthenticateRequest),
                "AuthDisable": (self.auth_disable, rpc_pb2.AuthDisableRequest),
                "UserList": (self.user_list, rpc_pb2.AuthUserListRequest),
                "RoleList": (self.role_list, rpc_pb2.AuthRoleListRequest),
                **{name: (self.refuse, request_type) for name, request_type in _REFUSED.items()},
            },
        )

    async def _header(self) -> rpc_pb2.ResponseHeader:
        return self.identity.header(await store_call(self.store.current_revision()))

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
