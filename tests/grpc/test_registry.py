"""The method table: registration and grpc-go's texts for what is not there."""

from __future__ import annotations

import pytest
from zope.interface.verify import verifyObject

from k8s_sql.grpc.interfaces import IMethodRegistry
from k8s_sql.grpc.registry import CallKind, MethodRegistry
from k8s_sql.grpc.status import GRPCError, StatusCode


def handler(*args: object) -> None:
    return None


@pytest.fixture
def registry() -> MethodRegistry:
    registry = MethodRegistry()
    registry.unary("/pkg.Svc/Unary", handler, bytes, bytes)
    registry.server_stream("/pkg.Svc/Down", handler, bytes, bytes)
    registry.client_stream("/pkg.Svc/Up", handler, bytes, bytes)
    registry.bidi("/pkg.Svc/Both", handler, bytes, bytes)
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
        registry.unary(path, handler, bytes, bytes)


def test_registering_twice_fails(registry: MethodRegistry) -> None:
    with pytest.raises(ValueError, match="already registered"):
        registry.bidi("/pkg.Svc/Unary", handler, bytes, bytes)
