"""Counting calls by method: the instrumented registry's handlers and call observer."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import CancelledError, Deferred
from zope.interface.verify import verifyObject

from k8s_sql.grpc.interfaces import IMethodLookup
from k8s_sql.grpc.registry import CallKind, MethodRegistry
from k8s_sql.grpc.status import GRPCError, StatusCode
from k8s_sql.metrics.calls import InstrumentedRegistry
from k8s_sql.metrics.collectors import ServerMetrics


def identity(data: Any) -> Any:
    return data


def counted() -> tuple[InstrumentedRegistry, ServerMetrics]:
    metrics = ServerMetrics("3.6.4")
    return InstrumentedRegistry(MethodRegistry(), metrics), metrics


def value(metrics: ServerMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


UNARY = {"grpc_type": "unary", "grpc_service": "etcdserverpb.KV", "grpc_method": "Range"}
WATCH = {"grpc_type": "bidi_stream", "grpc_service": "etcdserverpb.Watch", "grpc_method": "Watch"}


def test_looks_methods_up_in_the_registry_it_wraps() -> None:
    registry, _ = counted()
    assert verifyObject(IMethodLookup, registry)
    registry.registry.add("/p.S/Unary", CallKind.UNARY, identity, identity, identity)
    registry.registry.add("/p.S/Both", CallKind.BIDI, identity, identity, identity)
    assert [registry.lookup(f"/p.S/{name}").kind for name in ("Unary", "Both")] == [CallKind.UNARY, CallKind.BIDI]
    with pytest.raises(GRPCError) as unknown:
        registry.lookup("/p.S/Nothing")
    assert unknown.value.message == "unknown method Nothing for service p.S"


def _fired(result: Any) -> Deferred[Any]:
    done: Deferred[Any] = Deferred()
    done.callback(result)
    return done


async def _doubled(request: int, call: Any) -> int:
    return request * 2


@pytest.mark.parametrize("handler", [
    lambda request, call: request * 2,
    lambda request, call: _fired(request * 2),
    _doubled,
], ids=["plain", "deferred", "coroutine"])
def test_handlers_of_every_kind_are_counted(handler: Any) -> None:
    registry, metrics = counted()
    registry.registry.add("/etcdserverpb.KV/Range", CallKind.UNARY, handler, identity, identity)
    method = registry.lookup("/etcdserverpb.KV/Range")
    results: list[Any] = []
    method.handler(21, None).addCallback(results.append)
    assert results == [42]
    assert value(metrics, "grpc_server_started_total", **UNARY) == 1
    assert value(metrics, "k8s_sql_grpc_calls_in_flight", **UNARY) == 0


def test_a_stream_is_in_flight_until_its_handler_ends() -> None:
    registry, metrics = counted()
    running: list[Deferred[None]] = []

    async def watch(call: Any) -> None:
        running.append(Deferred())
        await running[-1]

    registry.registry.add("/etcdserverpb.Watch/Watch", CallKind.BIDI, watch, identity, identity)
    first = registry.lookup("/etcdserverpb.Watch/Watch").handler(None)
    second = registry.lookup("/etcdserverpb.Watch/Watch").handler(None)
    assert value(metrics, "k8s_sql_grpc_calls_in_flight", **WATCH) == 2
    assert value(metrics, "etcd_debugging_mvcc_watch_stream_total") == 2
    first.addErrback(lambda failure: failure.trap(CancelledError))
    first.cancel()  # as the call does when the client resets the stream
    assert value(metrics, "k8s_sql_grpc_calls_in_flight", **WATCH) == 1
    running[1].callback(None)
    assert second.called
    assert value(metrics, "k8s_sql_grpc_calls_in_flight", **WATCH) == 0
    assert value(metrics, "etcd_debugging_mvcc_watch_stream_total") == 0
    assert value(metrics, "grpc_server_started_total", **WATCH) == 2


def test_a_handler_that_raises_is_counted_and_its_error_passed_on() -> None:
    registry, metrics = counted()

    def broken(request: Any, call: Any) -> None:
        raise GRPCError(StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided")

    registry.registry.add("/etcdserverpb.KV/Range", CallKind.UNARY, broken, identity, identity)
    failures: list[Any] = []
    registry.lookup("/etcdserverpb.KV/Range").handler(b"", None).addErrback(failures.append)
    assert failures[0].value.code is StatusCode.INVALID_ARGUMENT
    assert value(metrics, "k8s_sql_grpc_calls_in_flight", **UNARY) == 0


def test_the_observer_counts_completed_calls_by_code() -> None:
    registry, metrics = counted()
    registry.registry.add("/etcdserverpb.KV/Range", CallKind.UNARY, identity, identity, identity)
    registry.observe("/etcdserverpb.KV/Range", StatusCode.OK, 0.002)
    registry.observe("/etcdserverpb.KV/Range", StatusCode.OK, 0.3)
    registry.observe("/etcdserverpb.KV/Range", StatusCode.UNAVAILABLE, 0.01)
    registry.observe("", StatusCode.UNIMPLEMENTED, 0.0)
    registry.observe("/nope.S/M", StatusCode.UNIMPLEMENTED, 0.0)
    assert value(metrics, "grpc_server_handled_total", grpc_code="OK", **UNARY) == 2
    assert value(metrics, "grpc_server_handled_total", grpc_code="UNAVAILABLE", **UNARY) == 1
    assert value(metrics, "grpc_server_handling_seconds_sum", grpc_code="OK", **UNARY) == pytest.approx(0.302)
    assert value(metrics, "grpc_server_handling_seconds_bucket", grpc_code="OK", le="0.005", **UNARY) == 1
    unknown = {"grpc_type": "unknown", "grpc_service": "unknown", "grpc_method": "unknown"}
    assert value(metrics, "grpc_server_handled_total", grpc_code="UNIMPLEMENTED", **unknown) == 2
