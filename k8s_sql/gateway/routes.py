"""Which gRPC method each gateway path calls, and with which message types.

The paths are the ``google.api.http`` bindings of etcd's ``rpc.proto`` (every one of them
``post`` with ``body: "*"``), as etcd 3.5 serves them, plus ``/v3/maintenance/hashkv``,
which etcd binds from 3.6 on.  The message types come from our own service descriptors.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from k8s_sql.proto import rpc_pb2

#: Gateway path → (service, method) of ``etcdserverpb``.
BINDINGS: dict[str, tuple[str, str]] = {
    "/v3/kv/range": ("KV", "Range"),
    "/v3/kv/put": ("KV", "Put"),
    "/v3/kv/deleterange": ("KV", "DeleteRange"),
    "/v3/kv/txn": ("KV", "Txn"),
    "/v3/kv/compaction": ("KV", "Compact"),
    "/v3/watch": ("Watch", "Watch"),
    "/v3/lease/grant": ("Lease", "LeaseGrant"),
    "/v3/lease/revoke": ("Lease", "LeaseRevoke"),
    "/v3/kv/lease/revoke": ("Lease", "LeaseRevoke"),
    "/v3/lease/keepalive": ("Lease", "LeaseKeepAlive"),
    "/v3/lease/timetolive": ("Lease", "LeaseTimeToLive"),
    "/v3/kv/lease/timetolive": ("Lease", "LeaseTimeToLive"),
    "/v3/lease/leases": ("Lease", "LeaseLeases"),
    "/v3/kv/lease/leases": ("Lease", "LeaseLeases"),
    "/v3/cluster/member/add": ("Cluster", "MemberAdd"),
    "/v3/cluster/member/remove": ("Cluster", "MemberRemove"),
    "/v3/cluster/member/update": ("Cluster", "MemberUpdate"),
    "/v3/cluster/member/list": ("Cluster", "MemberList"),
    "/v3/cluster/member/promote": ("Cluster", "MemberPromote"),
    "/v3/maintenance/alarm": ("Maintenance", "Alarm"),
    "/v3/maintenance/status": ("Maintenance", "Status"),
    "/v3/maintenance/defragment": ("Maintenance", "Defragment"),
    "/v3/maintenance/hash": ("Maintenance", "Hash"),
    "/v3/maintenance/hashkv": ("Maintenance", "HashKV"),
    "/v3/maintenance/snapshot": ("Maintenance", "Snapshot"),
    "/v3/maintenance/transfer-leadership": ("Maintenance", "MoveLeader"),
    "/v3/maintenance/downgrade": ("Maintenance", "Downgrade"),
    "/v3/auth/enable": ("Auth", "AuthEnable"),
    "/v3/auth/disable": ("Auth", "AuthDisable"),
    "/v3/auth/status": ("Auth", "AuthStatus"),
    "/v3/auth/authenticate": ("Auth", "Authenticate"),
    "/v3/auth/user/add": ("Auth", "UserAdd"),
    "/v3/auth/user/get": ("Auth", "UserGet"),
    "/v3/auth/user/list": ("Auth", "UserList"),
    "/v3/auth/user/delete": ("Auth", "UserDelete"),
    "/v3/auth/user/changepw": ("Auth", "UserChangePassword"),
    "/v3/auth/user/grant": ("Auth", "UserGrantRole"),
    "/v3/auth/user/revoke": ("Auth", "UserRevokeRole"),
    "/v3/auth/role/add": ("Auth", "RoleAdd"),
    "/v3/auth/role/get": ("Auth", "RoleGet"),
    "/v3/auth/role/list": ("Auth", "RoleList"),
    "/v3/auth/role/delete": ("Auth", "RoleDelete"),
    "/v3/auth/role/grant": ("Auth", "RoleGrantPermission"),
    "/v3/auth/role/revoke": ("Auth", "RoleRevokePermission"),
}


@dataclass(frozen=True)
class Route:
    """What one gateway path calls."""

    #: The gRPC method path, e.g. ``/etcdserverpb.KV/Range``.
    method: str
    #: The request message type (of each request, for a client stream).
    request: type[Message]
    #: The response message type (of each response, for a server stream).
    response: type[Message]


def routes() -> dict[bytes, Route]:
    """Every gateway path (bytes, as twisted.web gives it) and its route."""
    table = {}
    for path, (service, name) in BINDINGS.items():
        method = rpc_pb2.DESCRIPTOR.services_by_name[service].methods_by_name[name]
        table[path.encode("ascii")] = Route(
            f"/{method.containing_service.full_name}/{name}",
            GetMessageClass(method.input_type),
            GetMessageClass(method.output_type),
        )
    return table
