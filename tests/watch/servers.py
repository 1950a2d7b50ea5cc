"""An in-process k8s-sql with KV and Watch over the real store, and a grpcio Watch session.

The server runs on the session's reactor thread (the ``run`` fixture), on a free port of
127.0.0.1, so tests can look at its hub and open calls.
"""

from __future__ import annotations

import queue
import time
from typing import Any, Callable, Iterator

from k8s_sql.etcd.services import register
from k8s_sql.etcd.header import Identity
from k8s_sql.etcd.kv import KVService
from k8s_sql.etcd.watch import WatchService
from k8s_sql.grpc.protocol import GRPCServerFactory
from k8s_sql.grpc.registry import MethodRegistry
from k8s_sql.proto import rpc_pb2
from k8s_sql.watch.follower import Follower
from k8s_sql.watch.hub import WatchHub
from tests.etcdclient import EtcdClient

Run = Callable[..., Any]


class Server:
    """KV and Watch on 127.0.0.1 over the real store."""

    def __init__(self, run: Run, reactor: Any, store: Any, **options: Any) -> None:
        self.run = run
        self.hub = WatchHub()
        self.follower = Follower(store, self.hub, reactor)
        run(self.follower.startService)
        registry = MethodRegistry()
        identity = Identity(store.cluster_id, 1)
        register(
            registry, KVService(store, identity), WatchService(self.hub, store, self.follower, identity, reactor, **options)
        )
        self.factory = GRPCServerFactory(registry, reactor)
        self.port = run(reactor.listenTCP, 0, self.factory, interface="127.0.0.1")
        self.endpoint = f"127.0.0.1:{self.port.getHost().port}"

    def watchers(self) -> int:
        """How many watchers the hub holds."""
        return self.run(len, self.hub)

    def open_calls(self) -> int:
        """How many gRPC calls are open."""
        return self.run(lambda: self.factory.open_calls)

    def wait_until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Poll ``condition`` from the test thread until it holds."""
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "condition not met in time"
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop listening, end the calls and the follower."""
        self.run(self.port.stopListening)
        self.run(self.factory.shutdown, 1.0)
        self.run(self.follower.stopService)


class WatchSession:
    """One Watch stream from grpcio: requests go in through a queue, responses come out."""

    def __init__(self, client: EtcdClient) -> None:
        self._requests: queue.Queue[rpc_pb2.WatchRequest | None] = queue.Queue()
        self.responses = client.Watch.Watch(self._outgoing())

    def _outgoing(self) -> Iterator[rpc_pb2.WatchRequest]:
        while (request := self._requests.get()) is not None:
            yield request

    def create(self, key: bytes, range_end: bytes = b"", **options: Any) -> None:
        self._requests.put(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=key, range_end=range_end, **options)))

    def cancel(self, watch_id: int) -> None:
        self._requests.put(rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=watch_id)))

    def progress(self) -> None:
        self._requests.put(rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest()))

    def half_close(self) -> None:
        self._requests.put(None)

    def next(self) -> rpc_pb2.WatchResponse:
        return next(self.responses)

    def events_until(self, revision: int) -> list[tuple[int, bytes, int]]:
        """``(type, key, mod_revision)`` of every event received up to ``revision``."""
        received: list[tuple[int, bytes, int]] = []
        while not received or received[-1][2] < revision:
            response = self.next()
            assert not response.canceled, response
            received.extend((e.type, e.kv.key, e.kv.mod_revision) for e in response.events)
        return received


def put(client: EtcdClient, key: bytes, value: bytes) -> int:
    """Put through the KV service; the revision it took."""
    return client.KV.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=10).header.revision
