"""A running etcd as the source of a copy, read through its gRPC API.

The snapshot's revision is pinned by a count-only Range of every key; the keys are then
read in pages of Range requests at that revision, in key order, so writes made meanwhile
do not show.  Leases come from LeaseLeases and LeaseTimeToLive (the seconds each has
left).  Calls that fail with UNAVAILABLE (a leader election, a lost connection) are tried
again after a pause; with a user name, the client authenticates, and again when etcd says
its token expired.  etcd does not report its compaction revision cheaply, so the header
says 0.
"""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import Message
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from zope.interface import implementer

from k8s_sql.etcd.convert import kv_of
from k8s_sql.grpc.interfaces import IUnaryChannel
from k8s_sql.grpc.status import GRPCError, StatusCode
from k8s_sql.migrate.interfaces import ISnapshotSource
from k8s_sql.migrate.snapshot import Batch, Pager, SnapshotHeader, next_key
from k8s_sql.proto import rpc_pb2
from k8s_sql.store.keys import ALL_FOLLOWING
from k8s_sql.store.model import LeaseTimeToLive

M = TypeVar("M", bound=Message)

FIRST_KEY = b"\0"

#: What etcd answers, UNAUTHENTICATED, when a token expired.
INVALID_TOKEN = "etcdserver: invalid auth token"

RANGE = "/etcdserverpb.KV/Range"
LEASE_LEASES = "/etcdserverpb.Lease/LeaseLeases"
LEASE_TIME_TO_LIVE = "/etcdserverpb.Lease/LeaseTimeToLive"
AUTHENTICATE = "/etcdserverpb.Auth/Authenticate"


@implementer(ISnapshotSource)
class EtcdSource:
    """The snapshot of the etcd ``channel`` reaches.

    ``user`` and ``password`` authenticate when etcd has auth enabled; ``timeout`` bounds
    each call; an UNAVAILABLE call is tried ``attempts`` times in all, pausing on ``clock``
    for 1, 2, 4... seconds (at most ``max_pause``) in between.
    """

    def __init__(
        self,
        channel: IUnaryChannel,
        clock: IReactorTime,
        *,
        user: str | None = None,
        password: str = "",
        timeout: float = 60.0,
        attempts: int = 5,
        max_pause: float = 10.0,
        pager: Pager | None = None,
    ) -> None:
        self.description = f"etcd {channel.authority}"
        self._channel = channel
        self._clock = clock
        self._user = user
        self._password = password
        self._timeout = timeout
        self._attempts = attempts
        self._max_pause = max_pause
        self._pager = pager or Pager()
        self._token: str | None = None
        self._revision = 0
        self._next: bytes | None = FIRST_KEY
        self._leases_read = False

    async def open(self, revision: int = 0) -> SnapshotHeader:
        """Pin ``revision`` (0: the current one) and count the keys there."""
        counted = await self._call(
            RANGE,
            rpc_pb2.RangeRequest(key=FIRST_KEY, range_end=ALL_FOLLOWING, count_only=True, revision=revision),
            rpc_pb2.RangeResponse,
        )
        self._revision = revision or counted.header.revision
        self._next, self._leases_read = FIRST_KEY, False
        return SnapshotHeader(self._revision, 0, counted.count, self.description)

    async def read(self) -> Batch | None:
        """Every lease with the first page of keys, then a page at a time."""
        leases: tuple[LeaseTimeToLive, ...] = ()
        if not self._leases_read:
            self._leases_read = True
            leases = await self._leases()
        if self._next is None:
            return Batch(leases) if leases else None
        page = await self._call(
            RANGE,
            rpc_pb2.RangeRequest(
                key=self._next, range_end=ALL_FOLLOWING, limit=self._pager.limit, revision=self._revision
            ),
            rpc_pb2.RangeResponse,
        )
        kvs = tuple(kv_of(message) for message in page.kvs)
        self._pager.measured(kvs)
        self._next = next_key(kvs[-1].key) if page.more and kvs else None
        return Batch(leases, kvs)

    async def _leases(self) -> tuple[LeaseTimeToLive, ...]:
        listed = await self._call(LEASE_LEASES, rpc_pb2.LeaseLeasesRequest(), rpc_pb2.LeaseLeasesResponse)
        leases = []
        for status in sorted(listed.leases, key=lambda status: status.ID):
            ttl = await self._call(
                LEASE_TIME_TO_LIVE, rpc_pb2.LeaseTimeToLiveRequest(ID=status.ID), rpc_pb2.LeaseTimeToLiveResponse
            )
            leases.append(LeaseTimeToLive(status.ID, ttl.TTL, ttl.grantedTTL))
        return tuple(leases)

    async def _call(self, path: str, request: Message, response_type: type[M]) -> M:
        """One call, authenticated if need be, tried again while etcd is unavailable."""
        attempt = 0
        reauthenticated = False
        while True:
            attempt += 1
            try:
                if self._user is not None and self._token is None:
                    self._token = await self._authenticate()
                metadata = [("token", self._token)] if self._token is not None else []
                return await self._channel.unary(path, request, response_type, metadata=metadata, timeout=self._timeout)
            except GRPCError as e:
                if (
                    e.code == StatusCode.UNAUTHENTICATED
                    and e.message == INVALID_TOKEN
                    and self._user
                    and not reauthenticated
                ):
                    self._token, reauthenticated = None, True
                    continue
                if e.code != StatusCode.UNAVAILABLE or attempt >= self._attempts:
                    raise
            await deferLater(self._clock, min(2.0 ** (attempt - 1), self._max_pause))

    async def _authenticate(self) -> str:
        answer = await self._channel.unary(
            AUTHENTICATE,
            rpc_pb2.AuthenticateRequest(name=self._user, password=self._password),
            rpc_pb2.AuthenticateResponse,
            metadata=(),
            timeout=self._timeout,
        )
        return answer.token
