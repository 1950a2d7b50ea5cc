"""grpc.health.v1.Health: Check, and Watch following changes of status."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, succeed

from k8s_sql.grpc.health import HealthService
from k8s_sql.grpc.registry import CallKind, MethodRegistry
from k8s_sql.proto.health_pb2 import HealthCheckRequest, HealthCheckResponse


class Sent:
    """The part of a server call Watch uses: what it sends."""

    def __init__(self) -> None:
        self.statuses: list[int] = []

    def send(self, message: HealthCheckResponse) -> Deferred[None]:
        self.statuses.append(message.status)
        return succeed(None)


def watch(health: HealthService, service: str) -> tuple[Sent, Deferred[Any]]:
    call = Sent()
    return call, ensureDeferred(health.watch(HealthCheckRequest(service=service), call))  # type: ignore[arg-type]


def test_both_methods_are_registered() -> None:
    registry = MethodRegistry()
    health = HealthService()
    registry.add_service(health.descriptor, health)
    assert registry.lookup("/grpc.health.v1.Health/Watch").kind is CallKind.SERVER_STREAM


def test_watch_sends_the_status_then_each_change() -> None:
    health = HealthService()
    call, done = watch(health, "")
    assert call.statuses == [HealthCheckResponse.SERVING]
    health.set_status("", HealthCheckResponse.NOT_SERVING)
    health.set_status("", HealthCheckResponse.NOT_SERVING)  # not a change: nothing sent
    health.set_status("", HealthCheckResponse.SERVING)
    assert call.statuses == [HealthCheckResponse.SERVING, HealthCheckResponse.NOT_SERVING, HealthCheckResponse.SERVING]
    assert not done.called


def test_an_unknown_service_is_reported_unknown_without_ending_the_call() -> None:
    health = HealthService()
    call, done = watch(health, "etcd")
    assert call.statuses == [HealthCheckResponse.SERVICE_UNKNOWN] and not done.called
    health.set_status("etcd", HealthCheckResponse.SERVING)
    assert call.statuses[-1] == HealthCheckResponse.SERVING


def test_a_cancelled_watch_is_forgotten() -> None:
    health = HealthService()
    _, done = watch(health, "")
    done.addErrback(lambda _: None)
    done.cancel()
    health.set_status("", HealthCheckResponse.NOT_SERVING)
