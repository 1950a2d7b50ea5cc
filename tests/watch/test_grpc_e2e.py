"""Watch streams end to end: grpcio and etcdctl against the real gRPC stack and store.

The server (KV and Watch over the real store, its follower and hub) runs in-process on the
session's reactor thread, on a free port of 127.0.0.1, so the tests can see that every
watcher is freed when clients go away.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import time
from typing import Any, Callable, Iterator

import grpc
import pytest

from k8s_sql.etcd.header import Identity
from k8s_sql.etcd.kv import KVService
from k8s_sql.etcd.watch import WatchService
from k8s_sql.grpc.protocol import GRPCServerFactory
from k8s_sql.grpc.registry import MethodRegistry
from k8s_sql.proto import kv_pb2, rpc_pb2
from k8s_sql.watch.follower import Follower
from k8s_sql.watch.hub import WatchHub
from tests.etcdclient import EtcdClient
from tests.processes import ETCDCTL

Run = Callable[..., Any]


class Server:
    """KV and Watch on 127.0.0.1 over the real store."""

    def __init__(self, run: Run, reactor: Any, store: Any, **options: Any) -> None:
        self.run = run
        self.hub = WatchHub()
        self.follower = Follower(store, self.hub, reactor, poll_interval=None)
        run(self.follower.startService)
        registry = MethodRegistry()
        identity = Identity(store.cluster_id, 1)
        KVService(store, identity).register(registry)
        WatchService(self.hub, store, self.follower, identity, reactor, **options).register(registry)
        self.factory = GRPCServerFactory(registry, reactor)
        self.port = run(reactor.listenTCP, 0, self.factory, interface="127.0.0.1")
        self.endpoint = f"127.0.0.1:{self.port.getHost().port}"

    def watchers(self) -> int:
        return self.run(len, self.hub)

    def open_calls(self) -> int:
        return self.run(lambda: self.factory.open_calls)

    def wait_until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "condition not met in time"
            time.sleep(0.02)

    def stop(self) -> None:
        self.run(self.port.stopListening)
        self.run(self.factory.shutdown, 1.0)
        self.run(self.follower.stopService)


@pytest.fixture
def server(run: Run, reactor: Any, store: Any) -> Iterator[Server]:
    serving = Server(run, reactor, store)
    yield serving
    serving.stop()


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
    return client.KV.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=10).header.revision


def test_create_events_progress_and_cancel(server: Server) -> None:
    with EtcdClient(server.endpoint) as client:
        session = WatchSession(client)
        session.create(b"/a/", range_end=b"/a0", prev_kv=True)
        created = session.next()
        assert created.created and created.watch_id == 0 and created.header.revision == 1
        assert created.header.cluster_id == client.KV.Range(rpc_pb2.RangeRequest(key=b"x"), timeout=10).header.cluster_id
        put(client, b"/a/1", b"one")
        put(client, b"/b", b"elsewhere")
        put(client, b"/a/1", b"two")
        first, second = session.next(), session.next()
        assert [(e.type, e.kv.key, e.kv.value, e.kv.mod_revision) for e in first.events] == [(kv_pb2.Event.PUT, b"/a/1", b"one", 2)]
        assert not first.events[0].HasField("prev_kv")
        assert second.events[0].prev_kv.value == b"one" and second.header.revision == 4
        session.progress()
        notice = session.next()
        assert notice.watch_id == -1 and notice.header.revision == 4 and not notice.events
        session.cancel(0)
        cancelled = session.next()
        assert cancelled.canceled and cancelled.watch_id == 0
        server.wait_until(lambda: server.watchers() == 0)
        session.half_close()


def test_replay_races_with_writes_without_gap_or_duplicate(server: Server) -> None:
    with EtcdClient(server.endpoint) as client:
        for number in range(50):
            put(client, b"/k/%d" % (number % 7), b"%d" % number)
        done = threading.Event()

        def writer() -> None:
            for number in range(50, 150):
                put(client, b"/k/%d" % (number % 7), b"%d" % number)
            done.set()

        thread = threading.Thread(target=writer)
        thread.start()
        session = WatchSession(client)
        session.create(b"/k/", range_end=b"/k0", start_revision=2)
        assert session.next().created
        received = session.events_until(151)
        thread.join()
        assert [revision for _, _, revision in received] == list(range(2, 152))
        session.half_close()


def test_half_close_keeps_the_watch_running(server: Server) -> None:
    with EtcdClient(server.endpoint) as client:
        session = WatchSession(client)
        session.create(b"k")
        assert session.next().created
        session.half_close()
        revision = put(client, b"k", b"v")
        assert session.events_until(revision) == [(kv_pb2.Event.PUT, b"k", revision)]


def test_reset_streams_and_lost_connections_free_every_watcher(server: Server) -> None:
    sessions = []
    client = EtcdClient(server.endpoint)
    for _ in range(10):
        session = WatchSession(client)
        for number in range(10):
            session.create(b"/w/%d" % number)
        assert [session.next().created for _ in range(10)] == [True] * 10
        sessions.append(session)
    assert server.watchers() == 100
    for session in sessions[:5]:
        session.responses.cancel()  # RST_STREAM(CANCEL)
    server.wait_until(lambda: server.watchers() == 50)
    client.close()  # the connection goes away under the other five
    server.wait_until(lambda: server.watchers() == 0 and server.open_calls() == 0)


def test_a_thousand_watchers_on_one_server(server: Server) -> None:
    with EtcdClient(server.endpoint) as client:
        sessions = [WatchSession(client) for _ in range(10)]
        for session in sessions:
            for number in range(100):
                session.create(b"/pods/", range_end=b"/pods0") if number % 2 else session.create(b"/pods/p")
        for session in sessions:
            assert all(session.next().created for _ in range(100))
        assert server.watchers() == 1000
        revision = put(client, b"/pods/p", b"v")
        for session in sessions:
            responses = [session.next() for _ in range(100)]
            assert {r.events[0].kv.mod_revision for r in responses} == {revision}
            session.half_close()
            session.responses.cancel()
    server.wait_until(lambda: server.watchers() == 0)


def etcdctl(endpoint: str, *arguments: str, **options: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [ETCDCTL, "--endpoints", endpoint, *arguments],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "ETCDCTL_API": "3"}, **options,
    )


def read_lines(process: subprocess.Popen[str], count: int, timeout: float = 20.0) -> list[str]:
    """The next ``count`` lines ``process`` prints, or fail after ``timeout``."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout.readline().rstrip("\n") for _ in range(count)))
    reader.start()
    reader.join(timeout)
    assert not reader.is_alive(), f"etcdctl printed only {lines}"
    return lines


def test_etcdctl_watch_replays_and_follows(server: Server) -> None:
    with EtcdClient(server.endpoint) as client:
        put(client, b"/e/1", b"one")
        put(client, b"/e/1", b"two")
        watcher = etcdctl(server.endpoint, "watch", "--prefix", "/e/", "--rev", "2", "--prev-kv")
        try:
            # etcdctl prints the type, then the previous key and value if any, then the key and value.
            assert read_lines(watcher, 8) == ["PUT", "/e/1", "one", "PUT", "/e/1", "one", "/e/1", "two"]
            put(client, b"/e/2", b"three")
            assert read_lines(watcher, 3) == ["PUT", "/e/2", "three"]
            client.KV.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"/e/1"), timeout=10)
            assert read_lines(watcher, 5) == ["DELETE", "/e/1", "two", "/e/1", ""]
        finally:
            watcher.terminate()
            watcher.wait(10)
    server.wait_until(lambda: server.watchers() == 0)


def test_etcdctl_interactive_progress(server: Server) -> None:
    with EtcdClient(server.endpoint) as client:
        put(client, b"x", b"1")
        watcher = etcdctl(server.endpoint, "watch", "-i")
        try:
            watcher.stdin.write("watch a\n")
            watcher.stdin.flush()
            server.wait_until(lambda: server.watchers() == 1)
            watcher.stdin.write("progress\n")
            watcher.stdin.flush()
            assert read_lines(watcher, 1) == ["progress notify: 2"]
        finally:
            watcher.terminate()
            watcher.wait(10)
    server.wait_until(lambda: server.watchers() == 0)
