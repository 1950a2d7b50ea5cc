"""What a gRPC method handler sees of its call, and how handlers are registered."""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IServerCall(Interface):
    """One gRPC call, from the handler's side.

    Handlers are ``async def`` functions (or functions returning Deferreds).  When the
    client cancels (RST_STREAM), the deadline passes or the connection is lost, the
    handler's Deferred is cancelled, so a pending ``await`` raises ``CancelledError``;
    everything the handler holds must be released in ``finally`` blocks.
    """

    method = Attribute("The full method path, e.g. '/etcdserverpb.KV/Range'.")
    metadata = Attribute(
        "The request metadata as a tuple of (lower-case name, value) pairs; values of "
        "'-bin' headers are decoded bytes, all others str.  Repeated names repeat."
    )
    peer = Attribute("The client's address (an IAddress).")
    deadline = Attribute("When the call times out, in reactor seconds, or None.")

    def receive():
        """Fire with the next request message, or ``None`` once the client half-closed."""

    def send(message):
        """Queue a response message.

        The returned Deferred fires once the message is within the client's flow-control
        window (or a small buffer); awaiting it is how producers respect back-pressure.
        """

    def set_trailing_metadata(metadata):
        """Add (name, value) pairs to the trailers sent when the call ends."""


class IMethodRegistry(Interface):
    """The method table a gRPC server dispatches on, by full method path."""

    def unary(path, handler, deserialize, serialize):
        """Register ``handler(request, call) -> response``."""

    def server_stream(path, handler, deserialize, serialize):
        """Register ``handler(request, call)`` that sends responses with ``call.send``."""

    def client_stream(path, handler, deserialize, serialize):
        """Register ``handler(call) -> response`` that reads requests with ``call.receive``."""

    def bidi(path, handler, deserialize, serialize):
        """Register ``handler(call)`` that both receives and sends."""

    def add_service(descriptor, implementation, translate_error=None):
        """Register every method of a protobuf ``ServiceDescriptor``, each served by the
        attribute of ``implementation`` named after it in snake_case.

        ``translate_error(exception)`` turns what the handlers fail with into a
        ``GRPCError`` ending the call, or ``None`` for an unexpected failure.
        """

    def lookup(path):
        """Return the registered method for ``path``, or raise ``GRPCError(UNIMPLEMENTED)``."""


class IUnaryChannel(Interface):
    """Unary gRPC calls to one server (``k8s_sql.grpc.client.GRPCChannel``)."""

    authority = Attribute("The server's host:port.")

    def unary(path, request, response_type, metadata=(), timeout=None):
        """Call ``path`` with the protobuf ``request`` (a coroutine giving a ``response_type``).

        ``metadata`` holds (name, value) pairs; ``timeout`` is in seconds (``None``: none).

        Fails with ``GRPCError``: the server's status, UNAVAILABLE when it cannot be reached.
        """

    def close():
        """Close the connection (a coroutine)."""
