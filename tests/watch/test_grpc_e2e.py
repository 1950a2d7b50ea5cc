"""Watch streams end to end: grpcio and etcdctl against the real gRPC stack and store.

The server (KV and Watch over the real store, its follower and hub) runs in-process on the
session's reactor thread, on a free port of 127.0.0.1, so the tests can see that every
watcher is freed when clients go away.
"""

from __future__ import annotations

import os
import subprocess
import threading
from typing import Any, Iterator

import pytest

from k8s_sql.proto import kv_pb2, rpc_pb2
from tests.etcdclient import EtcdClient
from tests.processes import ETCDCTL
from tests.watch.servers import Run, Server, WatchSession, put


@pytest.fixture
def server(run: Run, reactor: Any, store: Any) -> Iterator[Server]:
    serving = Server(run, reactor, store)
    yield serving
    serving.stop()


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
