"""Counting gRPC calls by method: a method registry that wraps each handler it hands out,
and the ``call_observer`` of ``GRPCServerFactory``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import ServiceDescriptor
from twisted.internet.defer import Deferred, maybeDeferred
from zope.interface import implementer

from k8s_sql.grpc.interfaces import IMethodRegistry
from k8s_sql.grpc.registry import CallKind, ErrorTranslator, Method, split_path
from k8s_sql.grpc.status import GRPCError, StatusCode
from k8s_sql.metrics.collectors import ServerMetrics

#: grpc-go's names for the call shapes, as its Prometheus interceptors label them.
GRPC_TYPES = {
    CallKind.UNARY: "unary",
    CallKind.SERVER_STREAM: "server_stream",
    CallKind.CLIENT_STREAM: "client_stream",
    CallKind.BIDI: "bidi_stream",
}
#: The labels of a call refused before it reached a method (unknown method, bad request).
UNKNOWN = ("unknown", "unknown", "unknown")


@implementer(IMethodRegistry)
class InstrumentedRegistry:
    """``registry``, with every call counted in ``metrics`` while its handler runs.

    Give it to ``GRPCServerFactory`` as its registry, and its ``observe`` as the
    factory's ``call_observer``.
    """

    def __init__(self, registry: IMethodRegistry, metrics: ServerMetrics) -> None:
        self.registry = registry
        self.metrics = metrics
        self._labels: dict[str, tuple[str, str, str]] = {}

    def unary(
        self,
        path: str,
        handler: Callable[..., Any],
        deserialize: Callable[[bytes], Any],
        serialize: Callable[[Any], bytes],
    ) -> None:
        """Register a unary method (see ``IMethodRegistry``)."""
        self.registry.unary(path, handler, deserialize, serialize)

    def server_stream(
        self,
        path: str,
        handler: Callable[..., Any],
        deserialize: Callable[[bytes], Any],
        serialize: Callable[[Any], bytes],
    ) -> None:
        """Register a server-streaming method (see ``IMethodRegistry``)."""
        self.registry.server_stream(path, handler, deserialize, serialize)

    def client_stream(
        self,
        path: str,
        handler: Callable[..., Any],
        deserialize: Callable[[bytes], Any],
        serialize: Callable[[Any], bytes],
    ) -> None:
        """Register a client-streaming method (see ``IMethodRegistry``)."""
        self.registry.client_stream(path, handler, deserialize, serialize)

    def bidi(
        self,
        path: str,
        handler: Callable[..., Any],
        deserialize: Callable[[bytes], Any],
        serialize: Callable[[Any], bytes],
    ) -> None:
        """Register a bidirectional-streaming method (see ``IMethodRegistry``)."""
        self.registry.bidi(path, handler, deserialize, serialize)

    def add_service(
        self, descriptor: ServiceDescriptor, implementation: object, translate_error: ErrorTranslator | None = None
    ) -> None:
        """Register a whole service (see ``IMethodRegistry``)."""
        self.registry.add_service(descriptor, implementation, translate_error)

    def lookup(self, path: str) -> Method:
        """The method at ``path``, its handler counting each call it serves."""
        method = self.registry.lookup(path)
        labels = self._labels_of(method)
        handler, started = method.handler, self.metrics.call_started

        def counted(*args: Any) -> Deferred[Any]:
            done = started(labels)
            return maybeDeferred(handler, *args).addBoth(_after, done)

        return method._replace(handler=counted)

    def observe(self, path: str, code: StatusCode, seconds: float) -> None:
        """The factory's ``call_observer``: count a completed call."""
        try:
            labels = self._labels_of(self.registry.lookup(path)) if path else UNKNOWN
        except GRPCError:
            labels = UNKNOWN
        self.metrics.call_handled(labels, code, seconds)

    def _labels_of(self, method: Method) -> tuple[str, str, str]:
        labels = self._labels.get(method.path)
        if labels is None:
            service, name = split_path(method.path) or ("unknown", "unknown")
            labels = self._labels[method.path] = (GRPC_TYPES[method.kind], service, name)
        return labels


def _after(result: Any, done: Callable[[], None]) -> Any:
    done()
    return result
