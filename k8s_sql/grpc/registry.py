"""The method table: handlers registered by full method path, looked up per call.

A whole service is registered from its protobuf descriptor (``add_service``): each method
is served by the implementation's attribute of the same name in snake_case
(``LeaseKeepAlive`` by ``lease_keep_alive``), with the descriptor's request type and call
shape, so a method table is never written by hand.  An implementation that must decode a
method's requests itself provides ``decode_<name>`` (``decode_txn``: etcd's deeply nested Txns).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import Enum
from typing import Any, NamedTuple

from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from twisted.internet.defer import CancelledError
from twisted.python.failure import Failure
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

    @classmethod
    def of(cls, client_streaming: bool, server_streaming: bool) -> CallKind:
        """The shape a method descriptor's streaming flags describe."""
        if client_streaming:
            return cls.BIDI if server_streaming else cls.CLIENT_STREAM
        return cls.SERVER_STREAM if server_streaming else cls.UNARY


#: Turns an exception a handler failed with into the status that ends its call, or
#: ``None`` to report it as an unexpected failure (``UNKNOWN``).
ErrorTranslator = Callable[[BaseException], "GRPCError | None"]


class Method(NamedTuple):
    """One registered method: its path, shape, handler, message codecs and error translation."""

    path: str
    kind: CallKind
    handler: Callable[..., Any]
    deserialize: Callable[[bytes], Any]
    serialize: Callable[[Any], bytes]
    translate_error: ErrorTranslator | None = None


def failure_status(failure: Failure, translate: ErrorTranslator | None) -> GRPCError | None:
    """The status a call ends with when its handler failed with ``failure``: a ``GRPCError``
    as raised or as ``translate`` makes of the exception, CANCELLED for a cancellation, or
    ``None`` for an unexpected failure (the call ends UNKNOWN; callers log it)."""
    error = failure.value
    if isinstance(error, GRPCError):
        return error
    if isinstance(error, CancelledError):
        return GRPCError(StatusCode.CANCELLED, "")
    return translate(error) if translate is not None and error is not None else None


def serialize(message: Message | bytes) -> bytes:
    """The wire form of a response: a message, or the bytes a handler encoded itself."""
    return message if isinstance(message, bytes) else message.SerializeToString()


def handler_name(method: str) -> str:
    """The attribute serving a method: its name in snake_case (``HashKV`` -> ``hash_kv``)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", method).lower()


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

    def add(
        self,
        path: str,
        kind: CallKind,
        handler: Callable[..., Any],
        deserialize: Callable[[bytes], Any],
        serialize: Callable[[Any], bytes],
        translate_error: ErrorTranslator | None = None,
    ) -> None:
        """Register ``handler`` at ``path`` (``/package.Service/Method``) for calls of shape ``kind``.

        Unary handlers are called as ``handler(request, call)`` and return the response;
        server-streaming ones the same, sending with ``call.send``; client-streaming ones
        as ``handler(call)``, receiving with ``call.receive`` and returning the response;
        bidi ones as ``handler(call)``, both receiving and sending.
        """
        parts = split_path(path)
        if parts is None or not path.startswith("/") or not all(parts):
            raise ValueError(f"method path must look like /package.Service/Method, not {path!r}")
        if path in self._methods:
            raise ValueError(f"{path} is already registered")
        self._methods[path] = Method(path, kind, handler, deserialize, serialize, translate_error)
        self._services.add(parts[0])

    def add_service(
        self, descriptor: ServiceDescriptor, implementation: object, translate_error: ErrorTranslator | None = None
    ) -> None:
        """Register every method of ``descriptor``, served by ``implementation``'s attribute
        named after it in snake_case, its requests decoded by the request type, or by
        ``implementation``'s ``decode_<name>`` if it has one; ``translate_error`` maps the
        exceptions its handlers fail with onto statuses.  Raises ``ValueError`` if a method
        has no handler."""
        for method in descriptor.methods:
            handler = getattr(implementation, handler_name(method.name), None)
            if not callable(handler):
                raise ValueError(
                    f"{type(implementation).__name__} has no {handler_name(method.name)}() "
                    f"for /{descriptor.full_name}/{method.name}"
                )
            self.add(
                f"/{descriptor.full_name}/{method.name}",
                CallKind.of(method.client_streaming, method.server_streaming),
                handler,
                getattr(implementation, "decode_" + handler_name(method.name), None)
                or GetMessageClass(method.input_type).FromString,
                serialize,
                translate_error,
            )

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


def _quote(text: str) -> str:
    """Quote ``text`` the way Go's ``%q`` does for printable ASCII."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
