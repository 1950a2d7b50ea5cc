"""One gRPC call on one HTTP/2 stream: messages in and out, metadata, deadline, cancellation.

:class:`ServerCall` is the per-stream half of a connection; :mod:`k8s_sql.grpc.protocol`
owns the h2 connection and feeds each call its stream's events.  A call moves from
*open* (its handler runs) to *ending* (its status is decided; buffered output and the
trailers wait for flow-control window) to *closed* (trailers sent or stream reset).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any, NamedTuple

from h2.errors import ErrorCodes
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from k8s_sql.grpc.framing import MessageReader, frame_message
from k8s_sql.grpc.headers import RESPONSE_HEADERS, Header, RequestHead, encode_metadata, status_headers
from k8s_sql.grpc.interfaces import ICallConnection, IServerCall
from k8s_sql.grpc.registry import CallKind, Method, failure_status
from k8s_sql.grpc.status import GRPCError, StatusCode

_OPEN = 0
_ENDING = 1
_CLOSED = 2

_RETURNS_RESPONSE = (CallKind.UNARY, CallKind.CLIENT_STREAM)


class CallLimits(NamedTuple):
    """Per-call limits, fixed by the server factory."""

    #: The largest request message accepted, before and after decompression.
    max_receive_message_length: int
    #: Request bytes a handler may leave unread before the stream window stops opening.
    receive_buffer: int
    #: Acknowledge received bytes to the client in batches of at least this many.
    ack_threshold: int
    #: Response bytes buffered beyond the client's window before ``send`` waits.
    send_buffer: int


@implementer(IServerCall)
class ServerCall:
    """The server side of one call, as its handler sees it (:class:`IServerCall`)."""

    log = Logger()

    __slots__ = (
        "__weakref__",
        "_code",
        "_conn",
        "_drains",
        "_handler",
        "_headers_sent",
        "_inbox",
        "_inbox_bytes",
        "_limits",
        "_method",
        "_out",
        "_out_bytes",
        "_partial",
        "_reactor",
        "_reader",
        "_reading",
        "_receiver",
        "_remote_closed",
        "_started",
        "_state",
        "_timer",
        "_trailers",
        "_trailing",
        "_unacked",
        "deadline",
        "metadata",
        "method",
        "peer",
        "stream_id",
    )

    def __init__(
        self,
        conn: ICallConnection,
        stream_id: int,
        method: Method,
        head: RequestHead,
        limits: CallLimits,
        reactor: IReactorTime,
        peer: Any,
    ) -> None:
        self.method = method.path
        self.metadata = head.metadata
        self.peer = peer
        self._conn = conn
        self.stream_id = stream_id
        self._method = method
        self._limits = limits
        self._reactor = reactor
        self._started = reactor.seconds()
        self._timer: IDelayedCall | None = None
        self.deadline: float | None = None
        if head.timeout is not None:
            self.deadline = self._started + head.timeout
            self._timer = reactor.callLater(head.timeout, self._deadline_passed)
        self._state = _OPEN
        self._code = StatusCode.OK
        self._handler: Deferred[Any] | None = None
        self._reader = MessageReader(limits.max_receive_message_length, head.encoding, method.kind is CallKind.UNARY)
        self._reading = True
        self._inbox: deque[tuple[Any, int]] = deque()
        self._inbox_bytes = 0
        self._unacked = 0
        self._remote_closed = False
        self._receiver: Deferred[Any] | None = None
        self._out: deque[bytes | memoryview] = deque()
        self._out_bytes = 0
        self._partial = False
        self._headers_sent = False
        self._trailers: list[Header] | None = None
        self._trailing: list[Header] = []
        self._drains: list[Deferred[None]] = []

    @property
    def buffered(self) -> int:
        """Response bytes accepted by ``send`` and not yet handed to HTTP/2."""
        return self._out_bytes

    # IServerCall

    def receive(self) -> Deferred[Any]:
        """Fire with the next request message, or ``None`` once the client half-closed."""
        if self._state is not _OPEN:
            raise CancelledError(f"the call {self.method} has ended")
        if self._inbox:
            message, size = self._inbox.popleft()
            self._inbox_bytes -= size
            if self._unacked >= self._limits.ack_threshold and not self._remote_closed:
                self._open_window()
                self._conn.flush()
            return succeed(message)
        if self._remote_closed:
            return succeed(None)
        if self._receiver is not None:
            raise RuntimeError("receive() is already waiting for a message")
        self._receiver = Deferred(self._cancel_receive)
        return self._receiver

    def send(self, message: Any) -> Deferred[None]:
        """Queue a response message; the result fires once the client has room for it.

        The messages a call queues in one reactor turn go out together at its end, in as
        few DATA frames as fit; once more than the send buffer waits, at once.
        """
        if self._state is not _OPEN:
            raise CancelledError(f"the call {self.method} has ended")
        if self._method.kind in _RETURNS_RESPONSE:
            raise RuntimeError(f"{self.method} answers with its handler's return value, not send()")
        self._queue(self._method.serialize(message))
        if self._out_bytes <= self._limits.send_buffer:
            self._conn.flush_soon(self)
            return succeed(None)
        self.flush()  # a full buffer goes out now, as far as the windows allow
        if self._out_bytes <= self._limits.send_buffer or self._state is not _OPEN:
            return succeed(None)
        drained: Deferred[None] = Deferred(self._cancel_drain)
        self._drains.append(drained)
        return drained

    def set_trailing_metadata(self, metadata: Iterable[tuple[str, str | bytes]]) -> None:
        """Add (name, value) pairs to the trailers; ``-bin`` names take bytes values."""
        self._trailing.extend(encode_metadata(metadata))

    # Events from the connection

    def start(self) -> None:
        """Run the handler of a client-streaming or bidi call; others wait for their request."""
        if self._method.kind.client_streams:
            self._run(self)

    def data_received(self, data: bytes, flow_length: int, ended: bool) -> None:
        """Take a DATA frame's payload; ``ended`` when the client half-closed with it."""
        if self._state is not _OPEN:
            return
        if data and self._reading:
            try:
                payloads = self._reader.feed(data)
            except GRPCError as e:
                self.abort(e.code, e.message)
                return
            if payloads and not self._deliver(payloads):
                return
        if not ended and flow_length:
            self._unacked += flow_length
            if self._unacked >= self._limits.ack_threshold:
                self._open_window()

    def end_of_stream(self) -> None:
        """The client half-closed: no more request messages."""
        self._remote_closed = True
        if self._state is not _OPEN or not self._reading:
            return
        if self._reader.partial:
            # grpc-go's processUnaryRPC reports the read error as is (UNKNOWN); RecvMsg makes it INTERNAL.
            unary = self._method.kind is CallKind.UNARY
            self.abort(StatusCode.UNKNOWN if unary else StatusCode.INTERNAL, "unexpected EOF")
        elif self._method.kind.client_streams:
            receiver, self._receiver = self._receiver, None
            if receiver is not None:
                receiver.callback(None)
        elif not self._inbox:
            self.abort(
                StatusCode.INTERNAL,
                "cardinality violation: received no request message from non-client-streaming RPC",
            )
        else:
            request, _ = self._inbox.popleft()
            self._inbox_bytes = 0
            self._run(request, self)

    def reset_by_peer(self) -> None:
        """The client reset the stream (RST_STREAM): cancel the handler, drop everything."""
        self._terminate(StatusCode.CANCELLED)

    def connection_lost(self) -> None:
        """The connection is gone: cancel the handler, drop everything."""
        self._terminate(StatusCode.CANCELLED)

    def abort(self, code: StatusCode, message: str) -> None:
        """End the call now with ``code``, discarding unsent output and cancelling the handler.

        Used for transport-level endings (limits, bad input, deadline, shutdown).  The
        status goes out as trailers, or as RST_STREAM(CANCEL) when a response message
        is half sent and trailers would corrupt it.
        """
        if self._state is _CLOSED:
            return
        self._state = _ENDING
        self._code = code
        self._cancel_timer()
        self._out.clear()
        self._out_bytes = 0
        self._cancel_handler()
        if self._state is _CLOSED:
            return
        if self._partial:
            self._conn.reset_stream(self.stream_id, ErrorCodes.CANCEL)
            self._close()
        else:
            self._trailers = status_headers(code, message, self._trailing)
            self._send_trailers()
        self._conn.flush()

    # Handler

    def _run(self, *args: Any) -> None:
        result = self._handler = maybeDeferred(self._method.handler, *args)
        result.addCallbacks(self._handler_returned, self._handler_failed)

    def _handler_returned(self, result: Any) -> None:
        self._handler = None
        if self._state is not _OPEN:
            return
        if self._method.kind in _RETURNS_RESPONSE:
            try:
                payload = self._method.serialize(result)
            except Exception as e:
                self.log.failure(
                    "Serializing the response of {method} failed", level=LogLevel.error, method=self.method
                )
                self._finish(StatusCode.INTERNAL, f"grpc: error while marshaling: {e}")
                return
            self._queue(payload)
        self._finish(StatusCode.OK, "")

    def _handler_failed(self, failure: Failure) -> None:
        self._handler = None
        status = failure_status(failure, self._method.translate_error)
        if self._state is not _OPEN:
            if status is None:
                self.log.failure(
                    "Handler of {method} failed after its call ended", failure, level=LogLevel.error, method=self.method
                )
        elif status is not None:
            self._finish(status.code, status.message)
        else:
            self.log.failure("Handler of {method} failed", failure, level=LogLevel.error, method=self.method)
            self._finish(StatusCode.UNKNOWN, f"Exception calling application: {failure.value}")

    def _cancel_handler(self) -> None:
        handler, self._handler = self._handler, None
        if handler is not None:
            handler.cancel()

    # Input

    def _deliver(self, payloads: list[bytes]) -> bool:
        """Hand complete messages over; False if that ended the call."""
        method = self._method
        if method.kind is CallKind.UNARY:
            # As grpc-go's processUnaryRPC: the first message starts the handler, without
            # waiting for the half-close, and the rest of the stream is never read.
            self._reading = False
            try:
                request = method.deserialize(payloads[0])
            except Exception as e:
                self.abort(StatusCode.INTERNAL, f"grpc: error unmarshalling request: {e}")
                return False
            self._run(request, self)
            return self._state is _OPEN
        if not method.kind.client_streams and len(self._inbox) + len(payloads) > 1:
            self.abort(
                StatusCode.INTERNAL,
                "cardinality violation: received multiple request messages for non-client-streaming RPC",
            )
            return False
        for payload in payloads:
            try:
                message = method.deserialize(payload)
            except Exception as e:
                self.abort(StatusCode.INTERNAL, f"grpc: error unmarshalling request: {e}")
                return False
            receiver, self._receiver = self._receiver, None
            if receiver is not None:
                receiver.callback(message)
                if self._state is not _OPEN:
                    return False
            else:
                self._inbox.append((message, len(payload)))
                self._inbox_bytes += len(payload)
        return True

    def _open_window(self) -> None:
        """Let the client send more, unless the handler already has enough unread."""
        if self._inbox_bytes < self._limits.receive_buffer:
            self._conn.acknowledge(self.stream_id, self._unacked)
            self._unacked = 0

    def _cancel_receive(self, receiver: Deferred[Any]) -> None:
        if self._receiver is receiver:
            self._receiver = None

    def _cancel_drain(self, drained: Deferred[None]) -> None:
        if drained in self._drains:
            self._drains.remove(drained)

    # Output

    def _queue(self, payload: bytes) -> None:
        if not self._headers_sent:
            self._headers_sent = True
            self._conn.send_headers(self.stream_id, RESPONSE_HEADERS)
        data = frame_message(payload)
        self._out.append(data)
        self._out_bytes += len(data)

    def flush(self) -> None:
        """Send what the flow-control windows and the transport now allow, then the trailers."""
        conn = self._conn
        out = self._out
        if out:
            stream_id = self.stream_id
            while out:
                size = conn.room(stream_id)
                if size <= 0:
                    conn.wait_for_room(self)
                    break
                chunk = out[0]
                if len(chunk) <= size:
                    out.popleft()
                    if out:
                        chunk = self._coalesce(chunk, size)
                    self._partial = False
                else:
                    view = chunk if isinstance(chunk, memoryview) else memoryview(chunk)
                    out[0] = view[size:]
                    chunk = view[:size]
                    self._partial = True
                conn.send_data(stream_id, chunk)
                self._out_bytes -= len(chunk)
        if self._drains and self._out_bytes <= self._limits.send_buffer:
            drains, self._drains = self._drains, []
            for drained in drains:
                drained.callback(None)
        if not self._out and self._trailers is not None:
            self._send_trailers()
        conn.flush()

    def _coalesce(self, first: bytes | memoryview, size: int) -> bytes | memoryview:
        """``first`` and the whole messages after it that fit in one DATA frame of ``size``."""
        out = self._out
        parts = [first]
        total = len(first)
        while out and total + len(out[0]) <= size:
            total += len(out[0])
            parts.append(out.popleft())
        return first if len(parts) == 1 else b"".join(parts)

    def _finish(self, code: StatusCode, message: str) -> None:
        """The handler is done: send the status after any buffered output."""
        self._state = _ENDING
        self._code = code
        self._cancel_timer()
        self._trailers = status_headers(code, message, self._trailing)
        self.flush()

    def _send_trailers(self) -> None:
        trailers, self._trailers = self._trailers, None
        assert trailers is not None
        if not self._headers_sent:
            self._headers_sent = True
            trailers[:0] = RESPONSE_HEADERS
        conn = self._conn
        conn.send_headers(self.stream_id, trailers, end_stream=True)
        if conn.remote_open(self.stream_id):
            # The client may still be sending: tell it to stop, without error (RFC 9113 8.1).
            conn.reset_stream(self.stream_id, ErrorCodes.NO_ERROR)
        self._close()

    # Ending

    def _deadline_passed(self) -> None:
        self._timer = None
        self.abort(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _terminate(self, code: StatusCode) -> None:
        if self._state is _CLOSED:
            return
        self._state = _CLOSED
        self._code = code
        self._cancel_handler()
        self._close()

    def _close(self) -> None:
        self._state = _CLOSED
        self._cancel_timer()
        self._out.clear()
        self._out_bytes = 0
        self._inbox.clear()
        self._inbox_bytes = 0
        waiting = self._drains
        self._drains = []
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            waiting.append(receiver)
        for deferred in waiting:
            deferred.errback(CancelledError())
        self._conn.call_finished(self, self._code, self._reactor.seconds() - self._started)
