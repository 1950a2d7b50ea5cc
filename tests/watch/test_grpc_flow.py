"""A client that stops reading, over the real HTTP/2 protocol: the server keeps a bounded
amount for it, other clients are unaffected, and it catches up once it reads again."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from k8s_sql.etcd.header import Identity
from k8s_sql.etcd.watch import WatchService, WatchStream
from k8s_sql.grpc.interfaces import IServerCall
from k8s_sql.grpc.protocol import GRPCServerFactory
from k8s_sql.grpc.registry import CallKind, MethodRegistry
from k8s_sql.proto import rpc_pb2
from k8s_sql.watch.follower import Follower
from k8s_sql.watch.hub import WatchHub
from tests.grpc.h2peer import Peer, message
from tests.watch.doubles import MemoryLog

QUEUE_LIMIT = 16 * 1024

WATCH_METHOD = "/etcdserverpb.Watch/Watch"


def watch_request(**create: Any) -> bytes:
    return message(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(**create)).SerializeToString())


def event_revisions(peer: Peer, stream_id: int) -> list[int]:
    responses = [rpc_pb2.WatchResponse.FromString(payload) for payload in peer.response(stream_id).messages()]
    return [event.kv.mod_revision for response in responses for event in response.events]


def test_a_client_that_stops_reading_costs_a_bounded_amount_and_catches_up() -> None:
    clock = Clock()
    log = MemoryLog()
    hub = WatchHub()
    follower = Follower(log, hub, clock)
    follower.startService()
    service = WatchService(hub, log, follower, Identity(1, 2), clock, max_queue_bytes=QUEUE_LIMIT)
    streams: list[WatchStream] = []

    def watch(call: IServerCall) -> Deferred[None]:
        streams.append(WatchStream(service, call))
        return ensureDeferred(streams[-1].run())

    registry = MethodRegistry()
    registry.add(WATCH_METHOD, CallKind.BIDI, watch, rpc_pb2.WatchRequest.FromString, lambda response: response)
    factory = GRPCServerFactory(registry, clock, send_buffer=64 * 1024)
    slow = Peer(factory, auto_window=False)
    slow_id = slow.call(WATCH_METHOD, watch_request(key=b"/k/", range_end=b"/k0"), end=False)
    fast = Peer(factory)
    fast_id = fast.call(WATCH_METHOD, watch_request(key=b"/k/", range_end=b"/k0"), end=False)

    revisions = list(range(2, 1002))
    for number in revisions:
        log.write((b"/k/%d" % (number % 10), b"v" * 1000))
    slow.pump()
    assert event_revisions(fast, fast_id) == revisions
    # The slow client holds what its window allowed; the server a bounded remainder.
    received = len(slow.response(slow_id).data)
    assert received <= 65535
    slow_stream = streams[0]
    assert slow_stream.outbox.size <= QUEUE_LIMIT + 2000
    assert slow_stream.call.buffered <= 64 * 1024 + 2000  # type: ignore[attr-defined]
    assert len(hub) == 1  # the slow watch left the live flow; the fast one stayed

    slow.auto_window = True
    slow.h2.increment_flow_control_window(received)
    slow.h2.increment_flow_control_window(received, slow_id)
    slow.flush()
    slow.pump()
    assert event_revisions(slow, slow_id) == revisions
    assert len(hub) == 2
    log.write((b"/k/0", b"w"))
    assert event_revisions(slow, slow_id)[-1] == 1002 and event_revisions(fast, fast_id)[-1] == 1002
    for peer in (slow, fast):
        peer.protocol.connectionLost(Failure(ConnectionDone()))
    assert len(hub) == 0
