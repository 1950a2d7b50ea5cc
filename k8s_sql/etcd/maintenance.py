"""The etcd ``Maintenance`` service: status, alarms, hashes, snapshots and defragmentation over an ``IStore``.

k8s-sql is a one-member "cluster" per server, without raft: this server is its own leader,
its raft indexes are the current revision, and what etcd keeps in its bbolt file lives in
the SQL database.  See docs/maintenance.md.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from twisted.logger import Logger

from k8s_sql.etcd.errors import (
    BAD_LEADER_TRANSFEREE,
    INVALID_DOWNGRADE_TARGET,
    NO_INFLIGHT_DOWNGRADE,
    WRONG_DOWNGRADE_VERSION_FORMAT,
)
from k8s_sql.etcd.header import Identity
from k8s_sql.etcd.snapshot import SnapshotSender
from k8s_sql.grpc.interfaces import IServerCall
from k8s_sql.grpc.status import GRPCError, StatusCode
from k8s_sql.proto import rpc_pb2
from k8s_sql.store.interfaces import IStore
from k8s_sql.store.model import Alarm, AlarmType

#: Why an enabled downgrade is refused: there is no storage format to convert.
DOWNGRADE_UNSUPPORTED = (
    "k8s-sql does not downgrade: it keeps no etcd storage format; "
    "restart it with an older emulated etcd version instead"
)

_SEMVER = re.compile(r"(\d+)\.(\d+)\.(\d+)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?")


class EtcdVersion(NamedTuple):
    """An etcd version, as ``major.minor.patch``."""

    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> EtcdVersion | None:
        """A semantic version, or ``major.minor`` as etcd also accepts; ``None`` if neither."""
        match = _SEMVER.fullmatch(text) or _SEMVER.fullmatch(text + ".0")
        return cls(*map(int, match.groups())) if match else None

    def cluster_version(self) -> str:
        """The cluster version etcd reports for members of this version: ``major.minor.0``."""
        return f"{self.major}.{self.minor}.0"


def alarm_text(alarm: Alarm) -> str:
    """An alarm as etcd writes it into ``StatusResponse.errors``."""
    return f"memberID:{alarm.member_id} alarm:{alarm.alarm.name} "


class MaintenanceService:
    """Serves ``etcdserverpb.Maintenance`` from a store.

    @param store: the database this server serves.
    @param identity: the cluster and member ids put in every response header.
    @param version: the etcd version reported (``major.minor.patch``), as kube-apiserver
        enables features by it.
    @param reactor: the clock lease deadlines are kept on, and the thread pool snapshot
        files are read in.
    """

    log = Logger()
    descriptor = rpc_pb2.DESCRIPTOR.services_by_name["Maintenance"]

    def __init__(self, store: IStore, identity: Identity, version: str, reactor: Any) -> None:
        parsed = EtcdVersion.parse(version)
        if parsed is None or not _SEMVER.fullmatch(version):
            raise ValueError(f"not an etcd version (major.minor.patch): {version!r}")
        self.store = store
        self.identity = identity
        self.version = version
        self._version = parsed
        self._snapshots = SnapshotSender(store, identity, reactor)

    async def _header(self) -> rpc_pb2.ResponseHeader:
        return self.identity.header(await self.store.current_revision())

    async def status(self, request: rpc_pb2.StatusRequest, call: IServerCall) -> rpc_pb2.StatusResponse:
        """This member's status: always the leader, its raft indexes the current revision."""
        revision = await self.store.current_revision()
        size = await self.store.database_size()
        alarms = await self.store.alarms()
        response = rpc_pb2.StatusResponse(
            header=self.identity.header(revision),
            version=self.version,
            dbSize=size.total,
            dbSizeInUse=size.in_use,
            leader=self.identity.member_id,
            raftIndex=revision,
            raftAppliedIndex=revision,
            raftTerm=self.identity.raft_term,
            errors=[alarm_text(alarm) for alarm in alarms],
        )
        if self._version >= (3, 6, 0):
            response.storageVersion = self._version.cluster_version()
            response.downgradeInfo.SetInParent()
        return response

    async def alarm(self, request: rpc_pb2.AlarmRequest, call: IServerCall) -> rpc_pb2.AlarmResponse:
        """List, raise or clear alarms, as etcd's applier does; they are kept in the database."""
        kind = AlarmType(request.alarm) if request.alarm in AlarmType._value2member_map_ else None
        if request.action == rpc_pb2.AlarmRequest.GET:
            alarms = [alarm for alarm in await self.store.alarms() if request.alarm in (AlarmType.NONE, alarm.alarm)]
        elif request.action == rpc_pb2.AlarmRequest.ACTIVATE and kind not in (None, AlarmType.NONE):
            alarms = [await self.store.activate_alarm(request.memberID, kind)]
            self.log.warn("alarm {alarm} raised for member {member:x}", alarm=kind.name, member=request.memberID)
        elif request.action == rpc_pb2.AlarmRequest.DEACTIVATE and kind is not None:
            cleared = await self.store.deactivate_alarm(request.memberID, kind)
            alarms = [] if cleared is None else [cleared]
        else:
            alarms = []
        return rpc_pb2.AlarmResponse(
            header=await self._header(),
            alarms=[rpc_pb2.AlarmMember(memberID=alarm.member_id, alarm=alarm.alarm) for alarm in alarms],
        )

    async def defragment(self, request: rpc_pb2.DefragmentRequest, call: IServerCall) -> rpc_pb2.DefragmentResponse:
        """Have the database reclaim the space of deleted rows (see ``IDialect.defragment``)."""
        self.log.info("defragmenting the database")
        await self.store.defragment()
        self.log.info("defragmented the database")
        return rpc_pb2.DefragmentResponse(header=await self._header())

    async def hash(self, request: rpc_pb2.HashRequest, call: IServerCall) -> rpc_pb2.HashResponse:
        """The hash of the key space at the current revision.

        etcd hashes its whole bbolt file, raft and membership data included, which k8s-sql
        does not have: the key space is what servers sharing a database can compare.
        """
        result = await self.store.hash_kv(0)
        return rpc_pb2.HashResponse(header=self.identity.header(result.current_revision), hash=result.hash)

    async def hash_kv(self, request: rpc_pb2.HashKVRequest, call: IServerCall) -> rpc_pb2.HashKVResponse:
        """etcd's HashKV at a revision (0: the current one), equal to a real etcd's for equal histories."""
        result = await self.store.hash_kv(request.revision)
        return rpc_pb2.HashKVResponse(
            header=self.identity.header(result.current_revision),
            hash=result.hash,
            compact_revision=result.compact_revision,
            hash_revision=result.revision,
        )

    async def snapshot(self, request: rpc_pb2.SnapshotRequest, call: IServerCall) -> None:
        """Stream the store as etcd 3.5's snapshot file, then its sha256 (``k8s_sql.etcd.snapshot``)."""
        await self._snapshots.send(call)

    async def move_leader(self, request: rpc_pb2.MoveLeaderRequest, call: IServerCall) -> rpc_pb2.MoveLeaderResponse:
        """As a one-member etcd: moving leadership to itself succeeds, to anyone else fails."""
        if request.targetID != self.identity.member_id:
            raise BAD_LEADER_TRANSFEREE.exception()
        return rpc_pb2.MoveLeaderResponse(header=await self._header())

    async def downgrade(self, request: rpc_pb2.DowngradeRequest, call: IServerCall) -> rpc_pb2.DowngradeResponse:
        """Validate a target as etcd does (one minor version down); enabling is refused.

        No downgrade is ever in progress, so cancelling fails as etcd's does then.
        """
        if request.action == rpc_pb2.DowngradeRequest.CANCEL:
            raise NO_INFLIGHT_DOWNGRADE.exception()
        target = EtcdVersion.parse(request.version)
        if target is None:
            raise WRONG_DOWNGRADE_VERSION_FORMAT.exception()
        if (target.major, target.minor) != (self._version.major, self._version.minor - 1):
            raise INVALID_DOWNGRADE_TARGET.exception()
        if request.action == rpc_pb2.DowngradeRequest.ENABLE:
            raise GRPCError(StatusCode.UNIMPLEMENTED, DOWNGRADE_UNSUPPORTED)
        return rpc_pb2.DowngradeResponse(header=await self._header(), version=self._version.cluster_version())
