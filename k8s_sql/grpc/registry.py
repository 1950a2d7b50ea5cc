"""The method table: handlers registered by full method path, looked up per call."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any, NamedTuple

from zope.interface import implementer

from k8s_sql.grpc.interfaces import IMethodRegistry
from k8s_sql.grpc.status import GRPCError, StatusCode


class CallKind(Enum):
    """The four gRPC call shapes; they differ in how many messages flow each way."""

    UNARY = "unary"
    SERVER_STREAM = "server_stream"
    CLIENT_STREAM = "client_stream"
    BIDI = "bidi"

    @property
    def client_streams(self) -> bool:
        """Whether the client may send more than one request message."""
        return self is CallKind.CLIENT_STREAM or self is CallKind.BIDI


class Method(NamedTuple):
    """One registered method: its path, shape, handler and message codecs."""

    path: str
    kind: CallKind
    handler: Callable[..., Any]
    deserialize: Callable[[bytes], Any]
    serialize: Callable[[Any], bytes]


def split_path(path: str) -> tuple[str, str] | None:
    """Split ``/package.Service/Method`` into service and method, as grpc-go does.

    Returns ``None`` when the path has no ``/`` after its leading one.
    """
    name = path[1:] if path.startswith("/") else path
    service, slash, method = name.rpartition("/")
    if not slash:
        return None
    return service, method


@implementer(IMethodRegistry)
class MethodRegistry:
    """A method table for one server (or several sharing the same services)."""

    def __init__(self) -> None:
        self._methods: dict[str, Method] = {}
        self._services: set[str] = set()

    def unary(
        self,
        path: str,
        handler: Callable[..., Any],
        deserialize: Callable[[bytes], Any],
        serialize: Callable[[Any], bytes],
    ) -> None:
        """Register ``handler(request, call) -> response``."""
        self._add(path, CallKind.UNARY, handler, deserialize, serialize)

    def server_stream(
        self,
        path: str,
        handler: Callable[..., Any],
        deserialize: Callable[[bytes], Any],
        serialize: Callable[[Any], bytes],
    ) -> None:
        """Register ``handler(request, call)`` that sends responses with ``call.send``."""
        self._add(path, CallKind.SERVER_STREAM, handler, deserialize, serialize)

    def client_stream(
        self,
        path: str,
        handler: Callable[..., Any],
        deserialize: Callable[[bytes], Any],
        serialize: Callable[[Any], bytes],
    ) -> None:
        """Register ``handler(call) -> response`` that reads requests with ``call.receive``."""
        self._add(path, CallKind.CLIENT_STREAM, handler, deserialize, serialize)

    def bidi(
        self,
        path: str,
        handler: Callable[..., Any],
        deserialize: Callable[[bytes], Any],
        serialize: Callable[[Any], bytes],
    ) -> None:
        """Register ``handler(call)`` that both receives and sends."""
        self._add(path, CallKind.BIDI, handler, deserialize, serialize)

    def lookup(self, path: str) -> Method:
        """Return the method registered at ``path``.

        Raises ``GRPCError(UNIMPLEMENTED)`` with grpc-go's texts otherwise.
        """
        method = self._methods.get(path)
        if method is not None:
            return method
        parts = split_path(path)
        if parts is None:
            raise GRPCError(StatusCode.UNIMPLEMENTED, f"malformed method name: {_quote(path)}")
        service, name = parts
        if service in self._services:
            raise GRPCError(StatusCode.UNIMPLEMENTED, f"unknown method {name} for service {service}")
        raise GRPCError(StatusCode.UNIMPLEMENTED, f"unknown service {service}")

    def _add(
        self,
        path: str,
        kind: CallKind,
        handler: Callable[..., Any],
        deserialize: Callable[[bytes], Any],
        serialize: Callable[[Any], bytes],
    ) -> None:
        parts = split_path(path)
        if parts is None or not path.startswith("/") or not all(parts):
            raise ValueError(f"method path must look like /package.Service/Method, not {path!r}")
        if path in self._methods:
            raise ValueError(f"{path} is already registered")
        self._methods[path] = Method(path, kind, handler, deserialize, serialize)
        self._services.add(parts[0])


def _quote(text: str) -> str:
    """Quote ``text`` the way Go's ``%q`` does for printable ASCII."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
