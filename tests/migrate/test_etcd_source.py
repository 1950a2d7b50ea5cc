"""``EtcdSource`` over a scripted channel, on a ``task.Clock``: the requests it makes, its
retries and its authentication."""

from __future__ import annotations

from typing import Any, Sequence

import pytest
from google.protobuf.message import Message
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer
from zope.interface.verify import verifyObject

from k8s_sql.grpc.status import GRPCError, StatusCode
from k8s_sql.grpc.client import GRPCChannel
from k8s_sql.migrate.etcd import AUTHENTICATE, INVALID_TOKEN, LEASE_LEASES, LEASE_TIME_TO_LIVE, RANGE, EtcdSource
from k8s_sql.grpc.interfaces import IUnaryChannel
from k8s_sql.migrate.interfaces import ISnapshotSource
from k8s_sql.migrate.snapshot import Batch, Pager, SnapshotHeader
from k8s_sql.proto import kv_pb2, rpc_pb2
from k8s_sql.store.model import KeyValue, LeaseTimeToLive

UNAVAILABLE = GRPCError(StatusCode.UNAVAILABLE, "etcdserver: leader changed")


@implementer(IUnaryChannel)
class ScriptedChannel:
    """Answers each call with the next scripted message or error, recording the calls."""

    authority = "etcd.example:2379"

    def __init__(self, *answers: Message | GRPCError) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, Message, tuple]] = []

    async def unary(self, path: str, request: Message, response_type: type, metadata: Sequence = (), timeout: float | None = None) -> Any:
        self.calls.append((path, request, tuple(metadata)))
        answer = self.answers.pop(0)
        if isinstance(answer, GRPCError):
            raise answer
        assert isinstance(answer, response_type)
        return answer

    async def close(self) -> None:
        pass


def started(coroutine: Any) -> Deferred:
    return Deferred.fromCoroutine(coroutine)


def result(deferred: Deferred) -> Any:
    outcome: list[Any] = []
    deferred.addBoth(outcome.append)
    assert outcome, "the call has not finished"
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]


def counted(revision: int, count: int) -> rpc_pb2.RangeResponse:
    return rpc_pb2.RangeResponse(header=rpc_pb2.ResponseHeader(revision=revision), count=count)


def page(*keys: bytes, more: bool) -> rpc_pb2.RangeResponse:
    return rpc_pb2.RangeResponse(
        kvs=[kv_pb2.KeyValue(key=key, create_revision=2, mod_revision=3, version=2, value=b"v" + key, lease=5) for key in keys],
        more=more,
    )


def test_interfaces() -> None:
    assert verifyObject(ISnapshotSource, EtcdSource(ScriptedChannel(), Clock()))
    assert verifyObject(IUnaryChannel, ScriptedChannel())
    assert verifyObject(IUnaryChannel, GRPCChannel(Clock(), None, "host:1"))  # type: ignore[arg-type]


def test_a_snapshot_is_read_in_pages_at_the_pinned_revision() -> None:
    channel = ScriptedChannel(
        counted(40, 3),
        rpc_pb2.LeaseLeasesResponse(leases=[rpc_pb2.LeaseStatus(ID=9), rpc_pb2.LeaseStatus(ID=5)]),
        rpc_pb2.LeaseTimeToLiveResponse(ID=5, TTL=100, grantedTTL=120),
        rpc_pb2.LeaseTimeToLiveResponse(ID=9, TTL=-1),
        page(b"a", b"b", more=True),
        page(b"c", more=False),
    )
    source = EtcdSource(channel, Clock(), pager=Pager(first=2, most=2))
    assert result(started(source.open())) == SnapshotHeader(40, 0, 3, "etcd etcd.example:2379")
    first = result(started(source.read()))
    assert first.leases == (LeaseTimeToLive(5, 100, 120), LeaseTimeToLive(9, -1, 0))
    assert first.kvs == (KeyValue(b"a", 2, 3, 2, b"va", 5), KeyValue(b"b", 2, 3, 2, b"vb", 5))
    assert result(started(source.read())) == Batch((), (KeyValue(b"c", 2, 3, 2, b"vc", 5),))
    assert result(started(source.read())) is None
    paths = [path for path, _, _ in channel.calls]
    assert paths == [RANGE, LEASE_LEASES, LEASE_TIME_TO_LIVE, LEASE_TIME_TO_LIVE, RANGE, RANGE]
    ranges = [request for path, request, _ in channel.calls if path == RANGE]
    assert (ranges[0].key, ranges[0].range_end, ranges[0].count_only, ranges[0].revision) == (b"\0", b"\0", True, 0)
    assert [(r.key, r.range_end, r.limit, r.revision) for r in ranges[1:]] == [(b"\0", b"\0", 2, 40), (b"b\0", b"\0", 2, 40)]


def test_a_given_revision_is_the_one_read() -> None:
    channel = ScriptedChannel(counted(90, 0), rpc_pb2.LeaseLeasesResponse(), page(more=False))
    source = EtcdSource(channel, Clock())
    assert result(started(source.open(70))).revision == 70
    assert result(started(source.read())) == Batch()
    assert [request.revision for _, request, _ in channel.calls if isinstance(request, rpc_pb2.RangeRequest)] == [70, 70]


def test_unavailable_calls_are_tried_again_after_growing_pauses() -> None:
    clock = Clock()
    channel = ScriptedChannel(UNAVAILABLE, UNAVAILABLE, counted(7, 1))
    opening = started(EtcdSource(channel, clock).open())
    assert len(channel.calls) == 1
    clock.advance(1.0)
    assert len(channel.calls) == 2
    clock.advance(1.9)
    assert len(channel.calls) == 2
    clock.advance(0.1)
    assert result(opening).revision == 7


def test_a_source_gives_up_after_its_attempts() -> None:
    clock = Clock()
    channel = ScriptedChannel(UNAVAILABLE, UNAVAILABLE, UNAVAILABLE)
    opening = started(EtcdSource(channel, clock, attempts=3).open())
    clock.pump([1.0, 2.0])
    with pytest.raises(GRPCError) as caught:
        result(opening)
    assert caught.value is UNAVAILABLE and len(channel.calls) == 3


def test_other_failures_are_not_retried() -> None:
    compacted = GRPCError(StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted")
    channel = ScriptedChannel(compacted)
    with pytest.raises(GRPCError) as caught:
        result(started(EtcdSource(channel, Clock()).open(3)))
    assert caught.value is compacted


def test_a_user_authenticates_and_again_when_the_token_expires() -> None:
    channel = ScriptedChannel(
        rpc_pb2.AuthenticateResponse(token="first"),
        counted(5, 0),
        GRPCError(StatusCode.UNAUTHENTICATED, INVALID_TOKEN),
        rpc_pb2.AuthenticateResponse(token="second"),
        rpc_pb2.LeaseLeasesResponse(),
        page(more=False),
    )
    source = EtcdSource(channel, Clock(), user="root", password="pw")
    result(started(source.open()))
    result(started(source.read()))
    assert [(path, metadata) for path, _, metadata in channel.calls] == [
        (AUTHENTICATE, ()),
        (RANGE, (("token", "first"),)),
        (LEASE_LEASES, (("token", "first"),)),
        (AUTHENTICATE, ()),
        (LEASE_LEASES, (("token", "second"),)),
        (RANGE, (("token", "second"),)),
    ]
    assert channel.calls[0][1] == rpc_pb2.AuthenticateRequest(name="root", password="pw")
