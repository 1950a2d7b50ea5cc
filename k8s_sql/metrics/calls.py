"""Counting gRPC calls by method: a view of a method table that wraps each handler it hands
out, and the ``call_observer`` of ``GRPCServerFactory``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from zope.interface import implementer

from k8s_sql.grpc.interfaces import IMethodLookup
from k8s_sql.grpc.registry import CallKind, Method, split_path
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


@implementer(IMethodLookup)
class InstrumentedRegistry:
    """The methods of ``registry``, each call counted in ``metrics`` while its handler runs.

    Give it to ``GRPCServerFactory`` as the methods to serve, and its ``observe`` as the
    factory's ``call_observer``; register methods on ``registry`` itself.
    """

    def __init__(self, registry: IMethodLookup, metrics: ServerMetrics) -> None:
        self.registry = registry
        self.metrics = metrics
        self._labels: dict[str, tuple[str, str, str]] = {}
        self._counted: dict[str, Method] = {}

    def lookup(self, path: str) -> Method:
        """The method at ``path``, its handler counting each call it serves (made once per method)."""
        counted = self._counted.get(path)
        if counted is None:
            method = self.registry.lookup(path)
            counted = self._counted[path] = method._replace(handler=self._counting(method))
        return counted

    def observe(self, path: str, code: StatusCode, seconds: float) -> None:
        """The factory's ``call_observer``: count a completed call."""
        labels = self._labels.get(path)
        if labels is None:
            try:
                labels = self._labels_of(self.registry.lookup(path)) if path else UNKNOWN
            except GRPCError:
                labels = UNKNOWN
        self.metrics.call_handled(labels, code, seconds)

    def _counting(self, method: Method) -> Callable[..., Deferred[Any]]:
        labels = self._labels_of(method)
        handler, started = method.handler, self.metrics.call_started

        def counted(*args: Any) -> Deferred[Any]:
            done = started(labels)
            return maybeDeferred(handler, *args).addBoth(_after, done)

        return counted

    def _labels_of(self, method: Method) -> tuple[str, str, str]:
        labels = self._labels.get(method.path)
        if labels is None:
            service, name = split_path(method.path) or ("unknown", "unknown")
            labels = self._labels[method.path] = (GRPC_TYPES[method.kind], service, name)
        return labels


def _after(result: Any, done: Callable[[], None]) -> Any:
    done()
    return result
