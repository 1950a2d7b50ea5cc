"""A server with two worker processes, end to end: it serves as one, on every backend."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from k8s_sql.proto import rpc_pb2
from tests.etcdclient import EtcdClient
from tests.ops.support import K8S_SQL, TWISTD, scrape
from tests.processes import K8sSQL, ServerProcess, etcdctl, free_port


def client(endpoint: str) -> EtcdClient:
    """A client on a connection of its own (channels to one target share none)."""
    return EtcdClient(endpoint, **{"grpc.use_local_subchannel_pool": 1})


def workers_of(server: ServerProcess) -> dict[int, int]:
    """Worker index -> pid, from the supervisor's log."""
    return {int(index): int(pid) for index, pid in re.findall(r"Started worker (\d+) \(pid (\d+)\)", server.text())}


def test_two_workers_serve_as_one_server_and_stop_with_status_0(backend: str, tmp_path: Path) -> None:
    metrics_port = free_port()
    server = K8sSQL(backend, "--workers", "2", "--metrics-listen", f"tcp:{metrics_port}:interface=127.0.0.1",
                    cwd=str(tmp_path))
    try:
        server.wait_for_output(r"with 2 worker processes")
        for number in range(6):  # over fresh connections, so over both workers
            assert etcdctl(server.endpoint, "put", f"k{number}", str(number)).stdout == "OK\n"
        listed = etcdctl(server.endpoint, "get", "k", "--prefix", "--print-value-only").stdout.split()
        assert listed == [str(number) for number in range(6)]
        status = etcdctl(server.endpoint, "endpoint", "status", "-w", "json").stdout
        assert '"revision":7' in status
        metrics = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
        assert metrics["k8s_sql_workers", ()] == 2
        puts = metrics["grpc_server_handled_total", (
            ("grpc_code", "OK"), ("grpc_method", "Put"), ("grpc_service", "etcdserverpb.KV"), ("grpc_type", "unary"),
        )]
        assert puts == 6  # counted by both workers, added up
        # The client port's page, which one worker answers, shows the whole server too.
        through_client = scrape(f"http://{server.endpoint}/metrics")
        assert through_client["k8s_sql_workers", ()] == 2
        assert len(workers_of(server)) == 2
    finally:
        status_code = server.stop()
    assert status_code == 0, server.text()


def watch_events(endpoint: str, received: list[tuple[int, bytes]], ready: threading.Event) -> Any:
    """A watch of every key on a connection of its own, recording (revision, key)."""
    watcher = client(endpoint)
    requests: Any = iter([rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"\0", range_end=b"\0"))])

    def follow() -> None:
        try:
            for response in watcher.Watch.Watch(requests):
                if response.created:
                    ready.set()
                received.extend((event.kv.mod_revision, event.kv.key) for event in response.events)
        except grpc.RpcError:
            pass

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    return watcher


def test_a_write_through_one_worker_reaches_watches_on_the_other_at_once(backend: str, tmp_path: Path) -> None:
    # Polling every 30 s: an event seen within seconds came by the signal between workers.
    with K8sSQL(backend, "--workers", "2", "--poll-interval", "30s", cwd=str(tmp_path)) as server:
        server.wait_for_output(r"with 2 worker processes")
        # Four fresh connections, handed to the two workers in turn: two watch on each.
        streams = [([], threading.Event()) for _ in range(4)]
        watchers = [watch_events(server.endpoint, received, ready) for received, ready in streams]
        writers = [client(server.endpoint) for _ in range(2)]
        try:
            for _, ready in streams:
                assert ready.wait(10)
            written = []
            for number in range(20):
                response = writers[number % 2].KV.Put(rpc_pb2.PutRequest(key=b"k%02d" % number, value=b"v"), timeout=10)
                written.append((response.header.revision, b"k%02d" % number))
            deadline = time.monotonic() + 5
            while any(len(received) < len(written) for received, _ in streams) and time.monotonic() < deadline:
                time.sleep(0.02)
            for received, _ in streams:
                assert received == written  # every event, once, in order, on every worker
        finally:
            for connection in watchers + writers:
                connection.close()


def test_leases_expire_once_among_the_workers(backend: str, tmp_path: Path) -> None:
    with K8sSQL(backend, "--workers", "2", "--lease-sweep-interval", "100ms", cwd=str(tmp_path)) as server:
        server.wait_for_output(r"with 2 worker processes")
        received: list[tuple[int, bytes]] = []
        ready = threading.Event()
        watcher = watch_events(server.endpoint, received, ready)
        granters = [client(server.endpoint) for _ in range(2)]
        try:
            assert ready.wait(10)
            leases = []
            for number, granter in enumerate(granters * 2):
                lease = granter.Lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=2), timeout=10).ID
                granter.KV.Put(rpc_pb2.PutRequest(key=b"leased/%d" % number, value=b"v", lease=lease), timeout=10)
                leases.append(lease)
            deadline = time.monotonic() + 20
            while len(received) < 8 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert sorted(key for _, key in received[4:]) == [b"leased/%d" % number for number in range(4)]
            time.sleep(1)  # time for a second sweeper, if there were one, to revoke again
            assert len(received) == 8
            for lease in leases:
                assert granters[0].Lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=lease), timeout=10).TTL == -1
        finally:
            watcher.close()
            for granter in granters:
                granter.close()
        assert server.text().count("Revoked") >= 1 and "worker 1 k8s_sql.housekeeping" not in server.text()


def test_a_killed_worker_loses_no_acknowledged_write_and_is_started_again(backend: str, tmp_path: Path) -> None:
    with K8sSQL(backend, "--workers", "2", cwd=str(tmp_path)) as server:
        server.wait_for_output(r"with 2 worker processes")
        acknowledged: list[bytes] = []
        stop = threading.Event()

        def write(name: int) -> None:
            number = 0
            while not stop.is_set():
                with client(server.endpoint) as writer:  # a new connection after each failure
                    try:
                        while not stop.is_set():
                            key = b"w%d/%06d" % (name, number)
                            writer.KV.Put(rpc_pb2.PutRequest(key=key, value=b"v"), timeout=10)
                            acknowledged.append(key)
                            number += 1
                    except grpc.RpcError:
                        number += 1

        threads = [threading.Thread(target=write, args=(name,), daemon=True) for name in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        victim = workers_of(server)[1]
        subprocess.run(["kill", "-KILL", str(victim)], check=True)
        server.wait_for_output(r"Worker 1 exited .*starting it again", timeout=30)
        server.wait_for_output(r"Started worker 1 \(pid (?!%d\))\d+\)" % victim, timeout=30)
        time.sleep(1.5)
        stop.set()
        for thread in threads:
            thread.join(30)
        with client(server.endpoint) as reader:
            stored = {kv.key for kv in reader.KV.Range(rpc_pb2.RangeRequest(key=b"w", range_end=b"x"), timeout=30).kvs}
        assert acknowledged and set(acknowledged) <= stored


@pytest.mark.parametrize("command", ["k8s-sql", "twistd"])
def test_sigterm_stops_every_worker_and_the_command_with_status_0(command: str, tmp_path: Path) -> None:
    port = free_port()
    listen = f"tcp:{port}:interface=127.0.0.1"
    arguments = ["--listen", listen, "--endpoint", f"sqlite:///{tmp_path}/db.sqlite", "--workers", "2"]
    argv = [TWISTD, "-n", "--pidfile=", "k8s-sql", *arguments] if command == "twistd" else [K8S_SQL, *arguments]
    process = ServerProcess(argv, cwd=str(tmp_path))
    try:
        process.wait_for_output(r"with 2 worker processes")
        pids = list(workers_of(process).values())
        process.process.send_signal(signal.SIGTERM)
        status = process.process.wait(60)
    finally:
        process.stop()
    assert status == 0, process.text()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
