"""Keep-alive streams over the real gRPC stack and store, driven by grpcio.

The server runs in-process on the session's reactor thread, so the test can see that a
vanished client leaves no call behind.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterator

import grpc
import pytest

from k8s_sql.etcd.services import register
from k8s_sql.etcd.header import Identity
from k8s_sql.etcd.lease import LeaseService
from k8s_sql.grpc.protocol import GRPCServerFactory
from k8s_sql.grpc.registry import MethodRegistry
from k8s_sql.grpc.status import StatusCode
from k8s_sql.proto import rpc_pb2
from tests.etcdclient import EtcdClient

Run = Callable[..., Any]
KEEP_ALIVE = "/etcdserverpb.Lease/LeaseKeepAlive"


class Server:
    """The Lease service on 127.0.0.1, recording how each call ended."""

    def __init__(self, run: Run, reactor: Any, store: Any) -> None:
        self.run = run
        self.ended: list[tuple[str, StatusCode]] = []
        registry = MethodRegistry()
        register(registry, LeaseService(store, Identity(store.cluster_id, 1), reactor))
        self.factory = GRPCServerFactory(
            registry, reactor, call_observer=lambda method, code, duration: self.ended.append((method, code))
        )
        self.port = run(reactor.listenTCP, 0, self.factory, interface="127.0.0.1")
        self.endpoint = f"127.0.0.1:{self.port.getHost().port}"

    def open_calls(self) -> int:
        return self.run(lambda: self.factory.open_calls)

    def wait_idle(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.open_calls():
            assert time.monotonic() < deadline, f"{self.open_calls()} calls still open"
            time.sleep(0.05)

    def stop(self) -> None:
        self.run(self.port.stopListening)
        self.run(self.factory.shutdown, 1.0)


@pytest.fixture
def server(run: Run, reactor: Any, store: Any) -> Iterator[Server]:
    serving = Server(run, reactor, store)
    yield serving
    serving.stop()


def requests_until(first: list[rpc_pb2.LeaseKeepAliveRequest], done: threading.Event) -> Iterator[Any]:
    """Send ``first``, then keep the request stream open until ``done``."""
    yield from first
    done.wait(30)


def test_a_keep_alive_stream_renews_until_half_close(server: Server) -> None:
    with EtcdClient(server.endpoint) as client:
        lease = client.Lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=30), timeout=10).ID
        requests = [rpc_pb2.LeaseKeepAliveRequest(ID=lease), rpc_pb2.LeaseKeepAliveRequest(ID=lease + 1)] * 3
        answers = list(client.Lease.LeaseKeepAlive(iter(requests), timeout=10))
    assert [(a.ID, a.TTL) for a in answers] == [(lease, 30), (lease + 1, 0)] * 3
    server.wait_idle()
    assert (KEEP_ALIVE, StatusCode.OK) in server.ended


def test_cancelled_keep_alive_streams_leave_nothing_behind(server: Server) -> None:
    done = threading.Event()
    with EtcdClient(server.endpoint) as client:
        lease = client.Lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=30), timeout=10).ID
        streams = [
            client.Lease.LeaseKeepAlive(requests_until([rpc_pb2.LeaseKeepAliveRequest(ID=lease)], done))
            for _ in range(50)
        ]
        for stream in streams:
            assert next(stream).TTL == 30
        assert server.open_calls() == 50
        for stream in streams:
            stream.cancel()  # RST_STREAM
        server.wait_idle()
        done.set()
    assert server.ended.count((KEEP_ALIVE, StatusCode.CANCELLED)) == 50


def test_keep_alive_streams_of_a_lost_connection_leave_nothing_behind(server: Server) -> None:
    done = threading.Event()
    client = EtcdClient(server.endpoint)
    lease = client.Lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=30), timeout=10).ID
    streams = [
        client.Lease.LeaseKeepAlive(requests_until([rpc_pb2.LeaseKeepAliveRequest(ID=lease)], done))
        for _ in range(20)
    ]
    for stream in streams:
        next(stream)
    client.close()  # the connection goes away under the open streams
    server.wait_idle()
    done.set()
    assert server.ended.count((KEEP_ALIVE, StatusCode.CANCELLED)) == 20
    with pytest.raises(grpc.RpcError):
        next(streams[0])
