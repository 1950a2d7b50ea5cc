"""The method table: registration and grpc-go's texts for what is not there."""

from __future__ import annotations

import pytest
from zope.interface.verify import verifyObject

from k8s_sql.grpc.interfaces import IMethodRegistry
from k8s_sql.grpc.registry import CallKind, MethodRegistry, handler_name
from k8s_sql.grpc.status import GRPCError, StatusCode
from k8s_sql.proto import health_pb2


def handler(*args: object) -> None:
    return None


@pytest.fixture
def registry() -> MethodRegistry:
    registry = MethodRegistry()
    registry.add("/pkg.Svc/Unary", CallKind.UNARY, handler, bytes, bytes)
    registry.add("/pkg.Svc/Down", CallKind.SERVER_STREAM, handler, bytes, bytes)
    registry.add("/pkg.Svc/Up", CallKind.CLIENT_STREAM, handler, bytes, bytes)
    registry.add("/pkg.Svc/Both", CallKind.BIDI, handler, bytes, bytes)
    return registry


def test_provides_the_interface(registry: MethodRegistry) -> None:
    verifyObject(IMethodRegistry, registry)


def test_lookup_returns_each_shape(registry: MethodRegistry) -> None:
    paths = ("/pkg.Svc/Unary", "/pkg.Svc/Down", "/pkg.Svc/Up", "/pkg.Svc/Both")
    kinds = {path: registry.lookup(path).kind for path in paths}
    assert kinds == {
        "/pkg.Svc/Unary": CallKind.UNARY,
        "/pkg.Svc/Down": CallKind.SERVER_STREAM,
        "/pkg.Svc/Up": CallKind.CLIENT_STREAM,
        "/pkg.Svc/Both": CallKind.BIDI,
    }
    assert [kind.client_streams for kind in CallKind] == [False, False, True, True]


@pytest.mark.parametrize(("path", "text"), [
    ("/pkg.Other/Unary", "unknown service pkg.Other"),
    ("/pkg.Svc/Missing", "unknown method Missing for service pkg.Svc"),
    ("/nonsense", 'malformed method name: "/nonsense"'),
    ("", 'malformed method name: ""'),
])
def test_lookup_failures_use_grpc_go_texts(registry: MethodRegistry, path: str, text: str) -> None:
    with pytest.raises(GRPCError) as raised:
        registry.lookup(path)
    assert (raised.value.code, raised.value.message) == (StatusCode.UNIMPLEMENTED, text)


@pytest.mark.parametrize("path", ["pkg.Svc/NoSlash", "/pkg.Svc/", "//Method", "/Method"])
def test_registering_a_malformed_path_fails(registry: MethodRegistry, path: str) -> None:
    with pytest.raises(ValueError):
        registry.add(path, CallKind.UNARY, handler, bytes, bytes)


def test_registering_twice_fails(registry: MethodRegistry) -> None:
    with pytest.raises(ValueError, match="already registered"):
        registry.add("/pkg.Svc/Unary", CallKind.BIDI, handler, bytes, bytes)


@pytest.mark.parametrize(
    ("method", "name"),
    [("Check", "check"), ("HashKV", "hash_kv"), ("LeaseTimeToLive", "lease_time_to_live"), ("MemberAdd", "member_add")],
)
def test_handlers_are_named_in_snake_case(method: str, name: str) -> None:
    assert handler_name(method) == name


class Health:
    """An implementation of grpc.health.v1.Health with plain functions."""

    descriptor = health_pb2.DESCRIPTOR.services_by_name["Health"]

    def check(self, request: health_pb2.HealthCheckRequest, call: object) -> health_pb2.HealthCheckResponse:
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    def watch(self, request: health_pb2.HealthCheckRequest, call: object) -> None:
        return None


def translate(error: BaseException) -> GRPCError | None:
    return GRPCError(StatusCode.NOT_FOUND, str(error)) if isinstance(error, KeyError) else None


def test_a_service_is_registered_from_its_descriptor() -> None:
    registry = MethodRegistry()
    health = Health()
    registry.add_service(health.descriptor, health, translate)
    check = registry.lookup("/grpc.health.v1.Health/Check")
    watch = registry.lookup("/grpc.health.v1.Health/Watch")
    assert (check.kind, watch.kind) == (CallKind.UNARY, CallKind.SERVER_STREAM)
    assert check.handler == health.check and watch.handler == health.watch
    request = health_pb2.HealthCheckRequest(service="x")
    assert check.deserialize(request.SerializeToString()) == request
    response = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.NOT_SERVING)
    assert check.serialize(response) == response.SerializeToString() and check.serialize(b"as is") == b"as is"
    assert check.translate_error is translate
    with pytest.raises(GRPCError, match="unknown method Other for service grpc.health.v1.Health"):
        registry.lookup("/grpc.health.v1.Health/Other")


def test_a_service_missing_a_handler_is_refused() -> None:
    class HalfHealth:
        def check(self, request: object, call: object) -> None:
            return None

    with pytest.raises(ValueError, match=r"HalfHealth has no watch\(\) for /grpc.health.v1.Health/Watch"):
        MethodRegistry().add_service(Health.descriptor, HalfHealth())
