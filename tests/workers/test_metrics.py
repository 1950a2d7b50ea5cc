"""Several workers' metrics added up as one server's."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from k8s_sql.workers.metrics import _Families, merge


def worker(calls: int, in_flight: int, revision: int, memory: int, started: float, seconds: float) -> str:
    registry = CollectorRegistry()
    Counter("grpc_server_handled", "calls", ["grpc_method"], registry=registry).labels("Range").inc(calls)
    Gauge("k8s_sql_grpc_calls_in_flight", "in flight", registry=registry).set(in_flight)
    Gauge("etcd_debugging_mvcc_current_revision", "revision", registry=registry).set(revision)
    Gauge("process_resident_memory_bytes", "memory", registry=registry).set(memory)
    Gauge("process_start_time_seconds", "start", registry=registry).set(started)
    Histogram("commit_seconds", "commits", buckets=(0.01, 0.1), registry=registry).observe(seconds)
    return generate_latest(registry).decode()


def values(families: list) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(_Families(families)).decode()  # type: ignore[arg-type]
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_counters_histograms_and_held_gauges_add_up_shared_gauges_do_not() -> None:
    merged = values(merge([worker(3, 2, 10, 100, 50.0, 0.005), worker(4, 1, 12, 150, 40.0, 0.05)]))
    assert merged["grpc_server_handled_total", (("grpc_method", "Range"),)] == 7
    assert merged["k8s_sql_grpc_calls_in_flight", ()] == 3
    assert merged["process_resident_memory_bytes", ()] == 250
    assert merged["etcd_debugging_mvcc_current_revision", ()] == 12  # read from the shared database
    assert merged["process_start_time_seconds", ()] == 40.0
    assert merged["commit_seconds_count", ()] == 2
    assert merged["commit_seconds_bucket", (("le", "0.01"),)] == 1
    assert merged["commit_seconds_bucket", (("le", "0.1"),)] == 2


def test_one_worker_is_itself() -> None:
    text = worker(3, 2, 10, 100, 50.0, 0.005)
    assert values(merge([text])) == values(list(text_string_to_metric_families(text)))
