"""Several k8s-sql processes on one database as one cluster, end to end, on every backend.

They list each other (etcdctl member list, endpoint status and health with --cluster); one
drops out when stopped, or killed once its registration expires; a watch on one server sees
a write through another long before the next poll (a poll interval of 30 s tells the two
apart), with no event missed or repeated when a peer is killed, restarted or unreachable;
the peer port refuses strangers and forged signals with a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import struct
import threading
import time
from typing import Any, Callable

import grpc
import pytest

from k8s_sql.store.url import DatabaseURL
from tests.etcdclient import EtcdClient
from tests.processes import K8sSQL, etcdctl, etcdctl_json, free_port
from tests.watch.servers import WatchSession, put

#: So long that an event arriving within two seconds of its write was pushed, not polled (the
#: first poll comes 30 s after a server starts, later than these tests end).
NO_POLL = ("--poll-interval", "30s")
TIMEOUT = "2s"


class Server(K8sSQL):
    """A k8s-sql named ``name`` with a peer port on 127.0.0.1 and a short member timeout."""

    def __init__(self, database: str, name: str, *arguments: str, peer: bool = True) -> None:
        peers = ("--peer-listen", "tcp:0:interface=127.0.0.1") if peer else ()
        super().__init__(database, "--name", name, "--member-timeout", TIMEOUT, *peers, *arguments)
        self.name = name
        self.peer_port = int(self.wait_for_output(r"serving the peer channel on 127\.0\.0\.1:(\d+)").group(1)) if peer else 0

    def kill(self) -> None:
        """SIGKILL: no chance to leave the registry."""
        self.process.kill()
        self.process.wait()
        self.stop()

    def members(self) -> list[tuple[str, list[str]]]:
        """(name, client URLs) of each member ``etcdctl member list`` shows, by name."""
        listed = etcdctl_json(self.endpoint, "member", "list")["members"]
        return sorted((member["name"], member["clientURLs"]) for member in listed)


def eventually(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait for ``condition`` (the registry expiring a member, a peer being linked)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.1)


class Watcher:
    """A prefix watch on ``/c/`` whose events are received in the background, with their arrival times."""

    def __init__(self, server: K8sSQL, start_revision: int = 0) -> None:
        self.client = EtcdClient(server.endpoint)
        self.session = WatchSession(self.client)
        self.session.create(b"/c/", range_end=b"/c0", start_revision=start_revision)
        assert self.session.next().created
        self.events: list[tuple[float, int, bytes]] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for response in self.session.responses:
                with self._changed:
                    now = time.monotonic()
                    self.events.extend((now, event.kv.mod_revision, event.kv.value) for event in response.events)
                    self._changed.notify_all()
        except grpc.RpcError:
            pass  # the server stopped

    def arrival(self, revision: int, timeout: float) -> float:
        """When the event of ``revision`` arrived; fails if it does not within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for arrived, seen, _ in self.events:
                    if seen == revision:
                        return arrived
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no event for revision {revision} within {timeout} s"
                self._changed.wait(remaining)

    def revisions(self) -> list[int]:
        with self._changed:
            return [revision for _, revision, _ in self.events]

    def close(self) -> None:
        self.session.half_close()
        self.session.responses.cancel()
        self._reader.join(10)
        self.client.close()


def test_servers_list_each_other_and_drop_out_when_stopped_or_killed(backend: str) -> None:
    with Server(backend, "one") as one, Server(backend, "two") as two:
        assert one.members() == two.members() == [
            ("one", [f"http://{one.endpoint}"]), ("two", [f"http://{two.endpoint}"])
        ]
        with Server(backend, "three") as three:
            everyone = sorted([one, two, three], key=lambda server: server.name)
            assert three.members() == [(server.name, [f"http://{server.endpoint}"]) for server in everyone]
            statuses = etcdctl_json(one.endpoint, "endpoint", "status", "--cluster")
            assert sorted(status["Endpoint"] for status in statuses) == sorted(
                f"http://{server.endpoint}" for server in everyone
            )
            assert len({status["Status"]["header"]["member_id"] for status in statuses}) == 3
            checked = etcdctl(two.endpoint, "endpoint", "health", "--cluster")
            health = checked.stdout + checked.stderr
            assert health.count(" is healthy") == 3, health
            three.stop()
            assert "left the member registry" in three.text()
            assert one.members() == [("one", [f"http://{one.endpoint}"]), ("two", [f"http://{two.endpoint}"])]
        two.kill()
        assert [name for name, _ in one.members()] == ["one", "two"]  # until its registration expires
        eventually(lambda: one.members() == [("one", [f"http://{one.endpoint}"])])
        assert "two" in one.wait_for_output(r"two \([0-9a-f]+\) left").group(0)


def test_a_watch_sees_a_write_through_another_server_at_once(backend: str) -> None:
    with Server(backend, "watched", *NO_POLL) as watched, Server(backend, "writer", *NO_POLL) as writer:
        writer.wait_for_output(r"sending commit signals to watched")
        watcher = Watcher(watched)
        with EtcdClient(writer.endpoint) as client:
            for number in range(20):
                sent = time.monotonic()
                revision = put(client, b"/c/k", b"%d" % number)
                assert watcher.arrival(revision, timeout=2.0) - sent < 2.0
        watcher.close()


def test_no_event_is_missed_or_repeated_when_a_peer_is_killed_restarted_or_unreachable(backend: str) -> None:
    closed = free_port()
    with (
        Server(backend, "watched", *NO_POLL) as watched,
        Server(backend, "unreachable", "--poll-interval", "300ms", "--advertise-peer-urls", f"http://127.0.0.1:{closed}") as unreachable,
        Server(backend, "steady", *NO_POLL) as steady,
    ):
        first = Server(backend, "killed", *NO_POLL)
        for writer in (steady, first):
            writer.wait_for_output(r"sending commit signals to watched")
        start = put_once(steady, b"/c/start")
        watchers = [Watcher(watched, start), Watcher(unreachable, start)]
        stop = threading.Event()
        written: list[int] = []

        def write_through(server: K8sSQL, prefix: bytes) -> None:
            with EtcdClient(server.endpoint) as client:
                number = 0
                while not stop.is_set():
                    try:
                        written.append(put(client, b"/c/%s/%d" % (prefix, number % 7), b"%d" % number))
                    except Exception:
                        return  # its server was killed
                    number += 1
                    time.sleep(0.005)

        threads = [threading.Thread(target=write_through, args=(server, name)) for server, name in ((steady, b"s"), (first, b"k"))]
        for thread in threads:
            thread.start()
        try:
            eventually(lambda: len(written) > 40)
            first.kill()
            eventually(lambda: len(written) > 80)
            with Server(backend, "killed", *NO_POLL) as restarted:  # the same name, at once
                restarted.wait_for_output(r"sending commit signals to watched")
                with EtcdClient(restarted.endpoint) as client:
                    for number in range(5):
                        sent = time.monotonic()
                        revision = put(client, b"/c/r", b"%d" % number)
                        assert watchers[0].arrival(revision, timeout=2.0) - sent < 2.0
            stop.set()
            for thread in threads:
                thread.join()
            last = put_once(steady, b"/c/end")
            for watcher in watchers:
                watcher.arrival(last, timeout=10.0)
            replay = Watcher(steady, start)  # the log itself, read from the database
            replay.arrival(last, timeout=10.0)
            for watcher in watchers:
                assert watcher.revisions() == replay.revisions() == list(range(start, last + 1))
            replay.close()
        finally:
            stop.set()
            for thread in threads:
                thread.join()
            for watcher in watchers:
                watcher.close()


def put_once(server: K8sSQL, key: bytes) -> int:
    with EtcdClient(server.endpoint) as client:
        return put(client, key, b"")


def peer_secret(database: str) -> bytes:
    """The peer secret, read from the database as only those with access to it can."""
    url = DatabaseURL.parse(database)
    if url.backend == "sqlite":
        import sqlite3

        with sqlite3.connect(url.database) as connection:
            return bytes(connection.execute("SELECT value FROM k8s_secret").fetchone()[0])
    pytest.fail("read on SQLite only")


def greeting(port: int) -> tuple[socket.socket, bytes]:
    connection = socket.create_connection(("127.0.0.1", port), timeout=5)
    challenge = b""
    while len(challenge) < 24:
        challenge += connection.recv(24 - len(challenge))
    return connection, challenge


def hello(secret: bytes, challenge: bytes, instance: int) -> bytes:
    nonce = b"n" * 16
    mac = hmac.digest(secret, b"hello" + challenge[8:] + nonce + struct.pack(">Q", instance), hashlib.sha256)
    return challenge[:8] + struct.pack(">Q", instance) + nonce + mac


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_peer_port_refuses_strangers_and_forged_signals_with_a_log_line(backend: str) -> None:
    with Server(backend, "guarded", *NO_POLL) as guarded, Server(backend, "member", *NO_POLL) as member:
        member.wait_for_output(r"sending commit signals to guarded")
        port = guarded.peer_port
        with socket.create_connection(("127.0.0.1", port), timeout=5) as stranger:
            stranger.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        guarded.wait_for_output(r"refused commit signals from 127\.0\.0\.1:\d+: not the peer protocol")
        connection, challenge = greeting(port)
        connection.sendall(hello(b"x" * 32, challenge, 1))
        guarded.wait_for_output(r"refused commit signals from 127\.0\.0\.1:\d+: hello not signed with this database's peer secret")
        connection.close()
        secret = peer_secret(backend)
        connection, challenge = greeting(port)
        connection.sendall(hello(secret, challenge, 12345))
        guarded.wait_for_output(r"refused commit signals from 127\.0\.0\.1:\d+: instance 3039 is not a live member")
        connection.close()
        instance = int(member.wait_for_output(r"instance ([0-9a-f]+);").group(1), 16)
        connection, challenge = greeting(port)
        connection.sendall(hello(secret, challenge, instance) + struct.pack(">Q", 99) + b"f" * 16)
        guarded.wait_for_output(r"refused commit signals from 127\.0\.0\.1:\d+: signal 0 of the connection is forged")
        connection.close()
        watcher = Watcher(guarded)  # still taking the genuine signals
        assert watcher.arrival(put_once(member, b"/c/after"), timeout=1.0)
        watcher.close()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_member_id_is_stable_across_restarts_and_a_name_in_use_is_refused(backend: str) -> None:
    with Server(backend, "node") as server:
        member_id = etcdctl_json(server.endpoint, "endpoint", "status")[0]["Status"]["header"]["member_id"]
        with pytest.raises(RuntimeError) as refused:
            Server(backend, "node")
        assert "another server is running as member 'node'" in str(refused.value)
        assert "give each server sharing the database its own --name" in str(refused.value)
    with Server(backend, "node") as restarted:
        assert etcdctl_json(restarted.endpoint, "endpoint", "status")[0]["Status"]["header"]["member_id"] == member_id
        assert restarted.members() == [("node", [f"http://{restarted.endpoint}"])]


def test_a_server_with_worker_processes_is_one_member_and_every_worker_hears_its_peers(backend: str) -> None:
    """Worker 0 takes the peer port and passes peers' signals to its siblings; every worker
    signals its own commits to the peers."""
    with (
        K8sSQL(backend, "--name", "workers", "--workers", "2", "--member-timeout", TIMEOUT, "--peer-listen",
               "tcp:0:interface=127.0.0.1", *NO_POLL) as workers,
        Server(backend, "single", *NO_POLL) as single,
    ):
        workers.wait_for_output(r"with 2 worker processes")
        single.wait_for_output(r"sending commit signals to workers")
        assert [name for name, _ in single.members()] == ["single", "workers"]
        listed = etcdctl_json(single.endpoint, "member", "list")["members"]
        assert [len(member.get("peerURLs", [])) for member in sorted(listed, key=lambda m: m["name"])] == [1, 1]
        watchers = [Watcher(workers), Watcher(workers)]  # two connections: one to each worker
        with EtcdClient(single.endpoint) as client:
            for number in range(5):
                sent = time.monotonic()
                revision = put(client, b"/c/k", b"%d" % number)
                for watcher in watchers:
                    assert watcher.arrival(revision, timeout=2.0) - sent < 2.0
        watcher = Watcher(single)
        with EtcdClient(workers.endpoint) as first, EtcdClient(workers.endpoint) as second:
            for number in range(3):  # through both workers
                for client in (first, second):
                    sent = time.monotonic()
                    revision = put(client, b"/c/w", b"%d" % number)
                    assert watcher.arrival(revision, timeout=2.0) - sent < 2.0
        for each in [*watchers, watcher]:
            each.close()
