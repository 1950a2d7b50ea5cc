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


class ICallConnection(Interface):
    """What one call (``k8s_sql.grpc.stream.ServerCall``) may ask of its HTTP/2 connection.

    Every method concerns the calling stream only; nothing is written to the transport
    until ``flush``.
    """

    def send_headers(stream_id, headers, end_stream=False):
        """Queue a header block on the stream (``end_stream``: the last frame of it)."""

    def room(stream_id):
        """How many bytes of DATA the stream may send in its next frame now: 0 while the
        flow-control windows are closed or the transport is paused."""

    def send_data(stream_id, data):
        """Queue one DATA frame of at most ``room(stream_id)`` bytes."""

    def wait_for_room(call):
        """Have ``call.flush()`` called once its stream may send again."""

    def acknowledge(stream_id, size):
        """Let the client send ``size`` more bytes on the stream."""

    def reset_stream(stream_id, code):
        """Queue RST_STREAM with the HTTP/2 error ``code``."""

    def remote_open(stream_id):
        """Whether the client may still send on the stream."""

    def flush():
        """Write what was queued to the transport (deferred while a batch runs: received
        input, or the calls sending at a turn's end)."""

    def flush_soon(call):
        """Flush ``call`` at the end of this reactor turn, with the other calls queued in it."""

    def call_finished(call, code, duration):
        """The call has ended with ``code`` after ``duration`` seconds; forget it."""


class IFrameInspector(Interface):
    """Watches the frames one HTTP/2 client sends, before h2 parses them, against the
    connection's limits (``k8s_sql.grpc.abuse.AbuseLimits``)."""

    data_sent = Attribute(
        "How many DATA frames the server has sent on the connection; the connection adds one per "
        "frame.  PINGs and WINDOW_UPDATEs that follow response data are not idle chatter."
    )

    def inspect(data):
        """Account for ``data``, the next bytes received; return the first limit they
        break (a ``Breach``), or ``None``."""

    def stream_refused():
        """A stream was refused over MAX_CONCURRENT_STREAMS; return the ``Breach`` that
        makes (as a reset stream), or ``None``."""


class IMethodLookup(Interface):
    """What a gRPC server dispatches on: the method at a full path."""

    def lookup(path):
        """Return the registered method for ``path``, or raise ``GRPCError(UNIMPLEMENTED)``."""


class IMethodRegistry(IMethodLookup):
    """The method table a gRPC server dispatches on, by full method path, and its registration."""

    def add(path, kind, handler, deserialize, serialize, translate_error=None):
        """Register ``handler`` at ``path`` for calls of shape ``kind`` (a ``CallKind``).

        Unary and server-streaming handlers are called as ``handler(request, call)``,
        client-streaming and bidi ones as ``handler(call)``; unary and client-streaming
        handlers return the response, the others send with ``call.send``.
        """

    def add_service(descriptor, implementation, translate_error=None):
        """Register every method of a protobuf ``ServiceDescriptor``, each served by the
        attribute of ``implementation`` named after it in snake_case.

        ``translate_error(exception)`` turns what the handlers fail with into a
        ``GRPCError`` ending the call, or ``None`` for an unexpected failure.
        """


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
