"""Prometheus metrics scraped after real traffic (grpcio), parsed, and checked value by value."""

from __future__ import annotations

import queue
import time
from typing import Any, Callable, Iterator

import grpc
import pytest

from k8s_sql.proto import rpc_pb2
from tests.etcdclient import EtcdClient
from tests.ops.support import InProcessServer

Run = Callable[..., Any]
Metrics = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def call(method: str, service: str = "etcdserverpb.KV", kind: str = "unary", **more: str) -> tuple[tuple[str, str], ...]:
    """The sorted labels of a gRPC call metric."""
    return tuple(sorted({"grpc_method": method, "grpc_service": service, "grpc_type": kind, **more}.items()))


@pytest.fixture
def server(run: Run, reactor: Any, backend: str) -> Iterator[InProcessServer]:
    server = InProcessServer(run, reactor, backend, emulated_etcd_version="3.6.9")
    yield server
    server.stop()


def test_metrics_after_traffic(server: InProcessServer) -> None:
    with EtcdClient(server.endpoint) as client:
        for number in range(3):
            client.KV.Put(rpc_pb2.PutRequest(key=b"key%d" % number, value=b"value"))
        client.KV.Range(rpc_pb2.RangeRequest(key=b"key", range_end=b"kez"))
        client.KV.Range(rpc_pb2.RangeRequest(key=b"key0"))
        with pytest.raises(grpc.RpcError) as refused:
            client.KV.Range(rpc_pb2.RangeRequest(key=b""))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        lease = client.Lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=60))
        with pytest.raises(grpc.RpcError) as unknown:
            client.channel.unary_unary("/etcdserverpb.KV/Nothing")(b"")
        assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED

        # A Watch stream with one watcher stays open while the metrics are scraped.
        requests: queue.Queue[rpc_pb2.WatchRequest | None] = queue.Queue()
        requests.put(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"key", range_end=b"kez")))
        responses = client.Watch.Watch(iter(requests.get, None))
        assert next(responses).created
        metrics = server.scrape()
        requests.put(None)
        responses.cancel()

    # Calls, by method and code
    handled, started = "grpc_server_handled_total", "grpc_server_started_total"
    assert metrics[handled, call("Put", grpc_code="OK")] == 3
    assert metrics[handled, call("Range", grpc_code="OK")] == 2
    assert metrics[handled, call("Range", grpc_code="INVALID_ARGUMENT")] == 1
    assert metrics[handled, call("LeaseGrant", "etcdserverpb.Lease", grpc_code="OK")] == 1
    assert metrics[handled, call("unknown", "unknown", "unknown", grpc_code="UNIMPLEMENTED")] == 1
    assert metrics[started, call("Put")] == 3 and metrics[started, call("Range")] == 3
    assert metrics[started, call("Watch", "etcdserverpb.Watch", "bidi_stream")] == 1
    assert metrics["grpc_server_handling_seconds_count", call("Put", grpc_code="OK")] == 3
    assert 0 < metrics["grpc_server_handling_seconds_sum", call("Put", grpc_code="OK")] < 30
    assert metrics["grpc_server_handling_seconds_bucket", call("Put", grpc_code="OK", le="+Inf")] == 3

    # Open streams and watchers
    assert metrics["k8s_sql_grpc_calls_in_flight", call("Watch", "etcdserverpb.Watch", "bidi_stream")] == 1
    assert metrics["k8s_sql_grpc_calls_in_flight", call("Put")] == 0
    assert metrics["etcd_debugging_mvcc_watch_stream_total", ()] == 1
    assert metrics["etcd_debugging_mvcc_watcher_total", ()] == 1

    # What the database holds
    assert metrics["k8s_sql_database_up", ()] == 1
    assert metrics["etcd_debugging_mvcc_current_revision", ()] == 4
    assert metrics["etcd_debugging_mvcc_compact_revision", ()] == 0
    assert metrics["k8s_sql_leases", ()] == 1 and lease.ID
    size = server.run(server.service.store.database_size)
    assert metrics["etcd_mvcc_db_total_size_in_bytes", ()] == size.total > 0
    assert metrics["etcd_mvcc_db_total_size_in_use_in_bytes", ()] == size.in_use > 0

    # SQL time
    writes = metrics["k8s_sql_database_transaction_duration_seconds_count", (("outcome", "ok"), ("role", "writer"))]
    assert writes >= 4  # three puts and a grant, at least
    assert metrics["etcd_disk_backend_commit_duration_seconds_count", ()] == writes
    assert metrics["k8s_sql_database_transaction_duration_seconds_count", (("outcome", "ok"), ("role", "reader"))] >= 2

    # Identity and process
    assert metrics["etcd_server_version", (("server_version", "3.6.9"),)] == 1
    assert metrics["process_resident_memory_bytes", ()] > 0


def test_streams_end_and_compaction_shows(server: InProcessServer) -> None:
    watch = call("Watch", "etcdserverpb.Watch", "bidi_stream")
    with EtcdClient(server.endpoint) as client:
        requests: queue.Queue[rpc_pb2.WatchRequest | None] = queue.Queue()
        requests.put(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"a")))
        responses = client.Watch.Watch(iter(requests.get, None))
        assert next(responses).created
        for number in range(5):
            client.KV.Put(rpc_pb2.PutRequest(key=b"a", value=b"%d" % number))
        client.KV.Compact(rpc_pb2.CompactionRequest(revision=4))
        responses.cancel()
        requests.put(None)
        metrics = eventually(server, lambda metrics: metrics["etcd_debugging_mvcc_watch_stream_total", ()] == 0)
    assert metrics["etcd_debugging_mvcc_current_revision", ()] == 6
    assert metrics["etcd_debugging_mvcc_compact_revision", ()] == 4
    assert metrics["k8s_sql_leases", ()] == 0
    assert metrics["grpc_server_handled_total", call("Watch", "etcdserverpb.Watch", "bidi_stream", grpc_code="CANCELLED")] == 1
    assert metrics["k8s_sql_grpc_calls_in_flight", watch] == 0
    assert metrics["etcd_debugging_mvcc_watcher_total", ()] == 0


def test_openmetrics_when_the_scraper_asks_for_it(server: InProcessServer) -> None:
    response = server.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.status == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.body.endswith(b"# EOF\n")
    assert b"# TYPE grpc_server_handled counter" in response.body


def eventually(server: InProcessServer, condition: Callable[[Metrics], bool], timeout: float = 10.0) -> Metrics:
    """Scrape until ``condition`` holds of the metrics; return them."""
    deadline = time.monotonic() + timeout
    while not condition(metrics := server.scrape()):
        assert time.monotonic() < deadline, "the metrics did not get there in time"
        time.sleep(0.05)
    return metrics
