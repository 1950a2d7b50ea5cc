"""One gateway request, served by the gRPC method handler registered for it.

:class:`GatewayCall` is the handler's ``IServerCall``: request messages come from the
request body's JSON, turned into protobuf bytes and through the method's own
``deserialize``; response messages go through the method's ``serialize`` and are written
as JSON, once for a unary method, as a chunk each for a streaming one.  etcd's gateway
behaviour kept here (compared with etcd 3.5.1 by ``tests/gateway``):

- a unary request is the body's first JSON value (an empty body is an empty request;
  anything after the first value is ignored); one that does not decode is answered 400;
- a client-streaming request is every JSON value of the body, one after another; if the
  first does not decode the answer is 500 (``Unknown``), a later one ends the requests
  there as a half-close would;
- a streamed response starts with its first message: an error before it is answered
  like a unary error, one after it is a last ``{"error": {...}}`` chunk;
- ``Grpc-Timeout`` sets the deadline; ``Authorization`` and ``Grpc-Metadata-*`` headers
  become metadata.

Streamed responses respect back-pressure: the call is the request's push producer, and
``send`` returns a Deferred that waits while the connection's buffer is full.  A client
that goes away cancels the handler.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from k8s_sql.gateway.errors import HTTP_STATUS, error_body, stream_error
from k8s_sql.gateway.jsonpb import DecodeError, dumps, json_values, message_from_json, message_to_json
from k8s_sql.gateway.request import ClientRequest
from k8s_sql.gateway.routes import Route
from k8s_sql.grpc.headers import parse_timeout
from k8s_sql.grpc.interfaces import IServerCall
from k8s_sql.grpc.registry import CallKind, Method, failure_status
from k8s_sql.grpc.status import GRPCError, StatusCode

if TYPE_CHECKING:
    from k8s_sql.gateway.site import Gateway

_OPEN = 0
_ENDING = 1
_CLOSED = 2

_RETURNS_RESPONSE = (CallKind.UNARY, CallKind.CLIENT_STREAM)
_METADATA_PREFIX = b"grpc-metadata-"
JSON = b"application/json"


@implementer(IServerCall, IPushProducer)
class GatewayCall:
    """The handler's view of one gateway request, and the writer of its response.

    @param gateway: the gateway serving the request (limits, clock, bookkeeping).
    @param request: the twisted.web request, its body read whole.
    @param route: what the request's path calls.
    """

    log = Logger()

    def __init__(self, gateway: Gateway, request: ClientRequest, route: Route) -> None:
        self.gateway = gateway
        self.request = request
        self.route = route
        self.method = route.method
        self.peer = request.getClientAddress()
        self.metadata = _metadata(request)
        self.deadline: float | None = None
        self._method: Method | None = None
        self._request: Any = None
        # Request messages decoded ahead (a client stream's first), then the body's other JSON values.
        self._ready: list[Any] = []
        self._requests: Iterator[Any] = iter(())
        self._state = _OPEN
        self._handler: Deferred[Any] | None = None
        self._timer: IDelayedCall | None = None
        self._started = gateway.clock.seconds()
        self._responding = False
        # Whether the handler was called: requests refused before it are not gRPC calls.
        self._ran = False
        self._paused = False
        self._drains: list[Deferred[None]] = []

    # IServerCall

    def receive(self) -> Deferred[Any]:
        """Fire with the next request message of the body, or ``None`` after the last."""
        if self._state is not _OPEN:
            raise CancelledError(f"the call {self.method} has ended")
        if self._ready:
            return succeed(self._ready.pop())
        try:
            value = next(self._requests)
            message = self._decode(value)
        except StopIteration:
            return succeed(None)
        except (DecodeError, GRPCError) as error:
            self.log.debug("Ending the requests of {method} at a bad one: {error}", method=self.method, error=error)
            self._requests = iter(())
            return succeed(None)
        return succeed(message)

    def send(self, message: Any) -> Deferred[None]:
        """Write a response message as one chunk; fire once the connection takes more."""
        if self._state is not _OPEN:
            raise CancelledError(f"the call {self.method} has ended")
        method = self._method
        assert method is not None
        if method.kind in _RETURNS_RESPONSE:
            raise RuntimeError(f"{self.method} answers with its handler's return value, not send()")
        chunk = dumps({"result": self._encode(method, message)}) + b"\n"
        if not self._responding:
            self._respond(200)
            self.request.registerProducer(self, True)
        self.request.write(chunk)
        if not self._paused:
            return succeed(None)
        drained: Deferred[None] = Deferred(self._cancel_drain)
        self._drains.append(drained)
        return drained

    def set_trailing_metadata(self, metadata: Any) -> None:
        """Ignored: the gateway has no trailers to put it in."""

    # IPushProducer: the connection's buffer is full, or has room again.

    def pauseProducing(self) -> None:
        """Let ``send`` wait."""
        self._paused = True

    def resumeProducing(self) -> None:
        """Let the handler send again."""
        self._paused = False
        drains, self._drains = self._drains, []
        for drained in drains:
            drained.callback(None)

    def stopProducing(self) -> None:
        """The connection is going away: the request's ``notifyFinish`` ends the call."""

    # Serving

    def start(self) -> None:
        """Decode the request, then run the handler; errors are answered at once."""
        self.gateway.calls.add(self)
        self.request.notifyFinish().addErrback(self._connection_lost)
        try:
            self._prepare()
        except GRPCError as error:
            self._end(error.code, error.message)
            return
        method = self._method
        assert method is not None
        if method.kind.client_streams:
            self._run(self)
        else:
            self._run(self._request, self)

    def abort(self, code: StatusCode, message: str) -> None:
        """End the call now with ``code`` (the deadline passed, the server stops)."""
        if self._state is not _OPEN:
            return
        self._state = _ENDING
        handler, self._handler = self._handler, None
        if handler is not None:
            handler.cancel()
        self._end(code, message)

    def _prepare(self) -> None:
        request = self.request
        gateway = self.gateway
        if gateway.draining:
            raise GRPCError(StatusCode.UNAVAILABLE, "the server is shutting down")
        if request.too_large:
            raise GRPCError(
                StatusCode.RESOURCE_EXHAUSTED,
                f"gateway: request body larger than max ({request.body_size} vs. {gateway.max_body_bytes})",
            )
        timeout = request.getHeader(b"grpc-timeout")
        if timeout is not None:
            try:
                seconds = parse_timeout(timeout)
            except ValueError:
                text = timeout.decode("latin-1")
                raise GRPCError(StatusCode.INVALID_ARGUMENT, f"invalid grpc-timeout: {text}") from None
            self.deadline = self._started + seconds
            self._timer = gateway.clock.callLater(seconds, self._deadline_passed)
        self._method = method = gateway.registry.lookup(self.method)
        assert request.content is not None
        self._requests = json_values(request.content.getvalue().decode("utf-8", errors="replace"))
        try:
            first = next(self._requests, None)
            if not method.kind.client_streams:
                self._request = self._decode(first)
            elif first is not None:
                self._ready.append(self._decode(first))
        except DecodeError as error:
            code = StatusCode.UNKNOWN if method.kind.client_streams else StatusCode.INVALID_ARGUMENT
            raise GRPCError(code, str(error)) from None

    def _decode(self, value: Any) -> Any:
        """A request as the handler takes it: JSON, then protobuf bytes, then ``deserialize``."""
        method = self._method
        assert method is not None
        payload = message_from_json(value, self.route.request).SerializeToString()
        limit = self.gateway.max_receive_message_length
        if len(payload) > limit:
            raise GRPCError(
                StatusCode.RESOURCE_EXHAUSTED, f"grpc: received message larger than max ({len(payload)} vs. {limit})"
            )
        try:
            return method.deserialize(payload)
        except Exception as error:
            raise GRPCError(StatusCode.INTERNAL, f"grpc: error unmarshalling request: {error}") from None

    def _encode(self, method: Method, message: Any) -> dict[str, Any]:
        """A response as JSON: ``serialize``, then protobuf bytes, then the response type."""
        return message_to_json(self.route.response.FromString(method.serialize(message)))

    def _run(self, *args: Any) -> None:
        method = self._method
        assert method is not None
        self._ran = True
        handler = self._handler = maybeDeferred(method.handler, *args)
        handler.addCallbacks(self._handler_returned, self._handler_failed)

    def _handler_returned(self, result: Any) -> None:
        self._handler = None
        if self._state is not _OPEN:
            return
        method = self._method
        assert method is not None
        if method.kind not in _RETURNS_RESPONSE:
            self._end(StatusCode.OK, "")
            return
        try:
            body = dumps(self._encode(method, result))
        except Exception as error:
            self.log.failure("Serializing the response of {method} failed", level=LogLevel.error, method=self.method)
            self._end(StatusCode.INTERNAL, f"grpc: error while marshaling: {error}")
            return
        self._respond(200, body)
        self._finish(StatusCode.OK)

    def _handler_failed(self, failure: Failure) -> None:
        self._handler = None
        status = failure_status(failure, self._method.translate_error if self._method is not None else None)
        if self._state is not _OPEN:
            if status is None:
                self.log.failure(
                    "Handler of {method} failed after its call ended", failure, level=LogLevel.error, method=self.method
                )
        elif status is not None:
            # grpc-gateway reports a cancelled call with Go's context error.
            self._end(
                status.code, status.message or ("context canceled" if status.code is StatusCode.CANCELLED else "")
            )
        else:
            self.log.failure("Handler of {method} failed", failure, level=LogLevel.error, method=self.method)
            self._end(StatusCode.UNKNOWN, f"Exception calling application: {failure.value}")

    def _cancel_drain(self, drained: Deferred[None]) -> None:
        if drained in self._drains:
            self._drains.remove(drained)

    def _deadline_passed(self) -> None:
        self._timer = None
        self.abort(StatusCode.DEADLINE_EXCEEDED, "context deadline exceeded")

    # Response

    def _respond(self, status: int, body: bytes | None = None) -> None:
        """Write the status and headers, and ``body`` if the response is not streamed."""
        self._responding = True
        request = self.request
        request.setResponseCode(status)
        request.setHeader(b"content-type", JSON)
        if status == 200:
            # What grpc-gateway forwards of the gRPC response headers.
            request.setHeader(b"grpc-metadata-content-type", b"application/grpc")
        if body is not None:
            request.setHeader(b"content-length", b"%d" % len(body))
            request.write(body)

    def _end(self, code: StatusCode, message: str) -> None:
        """Finish with ``code``: a stream's last chunk, or the whole response."""
        if code is StatusCode.OK:
            if not self._responding:
                self._respond(200)
        elif self._responding:
            self.request.write(dumps(stream_error(code, message)))
        else:
            self._respond(HTTP_STATUS[code], dumps(error_body(code, message)))
        self._finish(code)

    def _finish(self, code: StatusCode) -> None:
        request = self.request
        if self._responding and request.producer is self:
            request.unregisterProducer()
        request.finish()
        self._close(code)

    def _connection_lost(self, reason: Failure) -> None:
        """The client went away before the response was complete: cancel the handler."""
        if self._state is _CLOSED:
            return
        self._state = _CLOSED
        handler, self._handler = self._handler, None
        if handler is not None:
            handler.cancel()
        self._close(StatusCode.CANCELLED)

    def _close(self, code: StatusCode) -> None:
        self._state = _CLOSED
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        drains, self._drains = self._drains, []
        for drained in drains:
            drained.errback(CancelledError())
        self.gateway.call_ended(self, code, self.gateway.clock.seconds() - self._started, ran=self._ran)


def _metadata(request: ClientRequest) -> tuple[tuple[str, str], ...]:
    """The request metadata grpc-gateway makes of HTTP headers it forwards."""
    pairs: list[tuple[str, str]] = []
    for name, values in request.requestHeaders.getAllRawHeaders():
        lower = name.lower()
        if lower == b"authorization":
            key = "authorization"
        elif lower.startswith(_METADATA_PREFIX) and len(lower) > len(_METADATA_PREFIX):
            key = lower[len(_METADATA_PREFIX) :].decode("latin-1")
        else:
            continue
        pairs.extend((key, value.decode("latin-1")) for value in values)
    return tuple(pairs)
