"""Unary gRPC calls over HTTP/2, on Twisted and h2: the client side.

The migration tool calls etcd with it; grpcio is not a dependency of the server.

:class:`GRPCChannel` sends each call on its own stream of one HTTP/2 connection, made on
first use and made again after it is lost.  :class:`ClientConnection` is that connection
as a Twisted protocol feeding an h2 state machine, the server's
:class:`~k8s_sql.grpc.protocol.GRPCProtocol` seen from the other end.  Failures are
:class:`~k8s_sql.grpc.status.GRPCError` with grpc-go's codes: the server's status, or
UNAVAILABLE when the connection fails, DEADLINE_EXCEEDED when a call's timeout passes.
Nothing here knows etcd.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote_to_bytes, urlsplit

from google.protobuf.message import DecodeError, Message
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import H2Error
from h2.settings import SettingCodes, Settings
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.ssl import (
    Certificate,
    PrivateCertificate,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from k8s_sql.grpc.framing import MessageReader, frame_message
from k8s_sql.grpc.headers import Header, encode_metadata, encode_timeout
from k8s_sql.grpc.interfaces import IUnaryChannel
from k8s_sql.grpc.status import GRPCError, StatusCode

M = TypeVar("M", bound=Message)

#: The largest response message accepted, by default.
DEFAULT_MAX_MESSAGE_BYTES = 512 * 1024 * 1024

#: The receive window this client opens, per stream and for the connection.
WINDOW = 16 * 1024 * 1024
_DEFAULT_WINDOW = 65535

#: grpc-go's statuses for HTTP responses that are not gRPC answers (http-grpc-status-mapping.md).
_HTTP_STATUS_CODES = {
    400: StatusCode.INTERNAL,
    401: StatusCode.UNAUTHENTICATED,
    403: StatusCode.PERMISSION_DENIED,
    404: StatusCode.UNIMPLEMENTED,
    429: StatusCode.UNAVAILABLE,
    502: StatusCode.UNAVAILABLE,
    503: StatusCode.UNAVAILABLE,
    504: StatusCode.UNAVAILABLE,
}

#: How a stream reset by the server ends its call.
_RESET_CODES: dict[int, StatusCode] = {
    ErrorCodes.CANCEL: StatusCode.CANCELLED,
    ErrorCodes.REFUSED_STREAM: StatusCode.UNAVAILABLE,
    ErrorCodes.ENHANCE_YOUR_CALM: StatusCode.RESOURCE_EXHAUSTED,
}


class _Call:
    """One unary call on one stream: the request still to send, the answer as it arrives."""

    def __init__(self, connection: ClientConnection, stream_id: int, payload: bytes, limit: int) -> None:
        self.connection = connection
        self.stream_id = stream_id
        self.pending = payload
        self.result: Deferred[bytes] = Deferred(lambda _: connection.cancel(self))
        self.timer: IDelayedCall | None = None
        self._limit = limit
        self._reader: MessageReader | None = None
        self._messages: list[bytes] = []
        self._headers: dict[bytes, bytes] = {}
        self._http_status = b""

    def response(self, headers: Sequence[Header]) -> None:
        """The response's first header block (Trailers-Only answers carry the status too)."""
        self._headers = dict(headers)
        self._http_status = self._headers.get(b":status", b"")
        self._reader = MessageReader(self._limit, self._headers.get(b"grpc-encoding"))

    def data(self, data: bytes) -> None:
        """Part of the response body."""
        if self._reader is None:
            raise GRPCError(StatusCode.INTERNAL, "received DATA before the response headers")
        self._messages.extend(self._reader.feed(data))

    def trailers(self, headers: Sequence[Header]) -> None:
        """The trailers, which carry the call's status."""
        self._headers.update(headers)

    def outcome(self) -> bytes:
        """The response message once the stream ended; raises the call's failure."""
        if self._http_status != b"200":
            status = int(self._http_status) if self._http_status.isdigit() else 0
            raise GRPCError(
                _HTTP_STATUS_CODES.get(status, StatusCode.UNKNOWN),
                f"unexpected HTTP status code received from server: {self._http_status.decode('latin-1')}",
            )
        raw_status = self._headers.get(b"grpc-status")
        if raw_status is None or not raw_status.isdigit():
            raise GRPCError(StatusCode.INTERNAL, "server closed the stream without sending a grpc-status")
        try:
            code = StatusCode(int(raw_status))
        except ValueError:
            code = StatusCode.UNKNOWN
        if code != StatusCode.OK:
            message = unquote_to_bytes(self._headers.get(b"grpc-message", b"")).decode("utf-8", "replace")
            raise GRPCError(code, message)
        if self._reader is not None and self._reader.partial:
            raise GRPCError(StatusCode.INTERNAL, "server ended the stream within a message")
        if len(self._messages) != 1:
            raise GRPCError(StatusCode.INTERNAL, f"expected one response message, received {len(self._messages)}")
        return self._messages[0]


class ClientConnection(Protocol):
    """One HTTP/2 connection to a gRPC server, carrying unary calls (client side).

    ``authority`` and ``scheme`` fill the pseudo-headers of every request;
    ``max_message_bytes`` bounds a response message.
    """

    def __init__(self, reactor: IReactorTime, authority: bytes, scheme: bytes, max_message_bytes: int) -> None:
        self._reactor = reactor
        self._authority = authority
        self._scheme = scheme
        self._limit = max_message_bytes
        self._h2 = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self._h2.local_settings = Settings(
            client=True,
            initial_values={SettingCodes.ENABLE_PUSH: 0, SettingCodes.INITIAL_WINDOW_SIZE: WINDOW},
        )
        self._calls: dict[int, _Call] = {}
        #: Why the connection takes no new calls (GOAWAY or lost), or ``None`` while it does.
        self.closed_reason: str | None = None
        self._lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        """Send the client preface and open the connection's receive window."""
        self._h2.initiate_connection()
        self._h2.increment_flow_control_window(WINDOW - _DEFAULT_WINDOW)
        self._write()

    def call(self, path: str, payload: bytes, metadata: Sequence[Header], timeout: float | None) -> Deferred[bytes]:
        """Send one request message to ``path``; fires with the response message's bytes."""
        if self.closed_reason is not None:
            raise GRPCError(StatusCode.UNAVAILABLE, self.closed_reason)
        stream_id = self._h2.get_next_available_stream_id()
        headers = [
            (b":method", b"POST"),
            (b":scheme", self._scheme),
            (b":path", path.encode("ascii")),
            (b":authority", self._authority),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ]
        if timeout is not None:
            headers.append((b"grpc-timeout", encode_timeout(timeout)))
        headers.extend(metadata)
        call = _Call(self, stream_id, frame_message(payload), self._limit)
        self._calls[stream_id] = call
        self._h2.send_headers(stream_id, headers)
        if timeout is not None:
            call.timer = self._reactor.callLater(timeout, self._expire, call)
        self._send_pending()
        self._write()
        return call.result

    def cancel(self, call: _Call) -> None:
        """Give up a call: reset its stream."""
        self._end(call, Failure(CancelledError()), ErrorCodes.CANCEL)
        self._write()

    def close(self) -> Deferred[None]:
        """Say GOAWAY and close the connection; fires once it is closed."""
        if self.transport is not None and not self._lost.called:
            self.closed_reason = self.closed_reason or "the channel is closed"
            try:
                self._h2.close_connection()
                self._write()
            except H2Error:
                pass  # the server closed the connection first
            self.transport.loseConnection()
        return self._lost

    def dataReceived(self, data: bytes) -> None:
        """Feed h2 and act on its events."""
        try:
            events = self._h2.receive_data(data)
        except H2Error as e:
            self._fail_all(f"HTTP/2 protocol error from the server: {e}")
            if self.transport is not None:
                self.transport.loseConnection()
            return
        for event in events:
            handler = _EVENTS.get(type(event))
            if handler is not None:
                handler(self, event)
        self._write()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Fail every call still waiting for an answer."""
        self._fail_all(f"connection lost: {reason.getErrorMessage()}")
        if not self._lost.called:
            self._lost.callback(None)

    # h2 events

    def _response(self, event: ResponseReceived) -> None:
        call = self._calls.get(event.stream_id)
        if call is not None:
            call.response(event.headers)

    def _data(self, event: DataReceived) -> None:
        self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        call = self._calls.get(event.stream_id)
        if call is None:
            return
        try:
            call.data(event.data)
        except GRPCError as e:
            self._end(call, Failure(e), ErrorCodes.CANCEL)

    def _trailers(self, event: TrailersReceived) -> None:
        call = self._calls.get(event.stream_id)
        if call is not None:
            call.trailers(event.headers)

    def _stream_ended(self, event: StreamEnded) -> None:
        call = self._calls.get(event.stream_id)
        if call is None:
            return
        try:
            outcome: bytes | Failure = call.outcome()
        except GRPCError as e:
            outcome = Failure(e)
        self._end(call, outcome, None)

    def _stream_reset(self, event: StreamReset) -> None:
        call = self._calls.get(event.stream_id)
        if call is not None:
            error_code = int(event.error_code or 0)
            code = _RESET_CODES.get(error_code, StatusCode.INTERNAL)
            error = GRPCError(code, f"stream terminated by RST_STREAM with error code: {error_code}")
            self._end(call, Failure(error), None)

    def _terminated(self, event: ConnectionTerminated) -> None:
        """GOAWAY: calls above the last stream the server took will never be answered."""
        self.closed_reason = f"the server is going away (GOAWAY {int(event.error_code or 0)})"
        last = event.last_stream_id if event.last_stream_id is not None else 0
        for call in [call for stream_id, call in self._calls.items() if stream_id > last]:
            self._end(call, Failure(GRPCError(StatusCode.UNAVAILABLE, self.closed_reason)), None)
        if not self._calls and self.transport is not None:
            self.transport.loseConnection()

    def _window_opened(self, event: object) -> None:
        self._send_pending()

    # helpers

    def _send_pending(self) -> None:
        """Send request bytes as far as the server's flow-control windows allow."""
        for call in list(self._calls.values()):
            while call.pending:
                room = min(self._h2.local_flow_control_window(call.stream_id), self._h2.max_outbound_frame_size)
                if room <= 0:
                    break
                chunk, call.pending = call.pending[:room], call.pending[room:]
                self._h2.send_data(call.stream_id, chunk, end_stream=not call.pending)

    def _expire(self, call: _Call) -> None:
        call.timer = None
        self._end(
            call, Failure(GRPCError(StatusCode.DEADLINE_EXCEEDED, "context deadline exceeded")), ErrorCodes.CANCEL
        )
        self._write()

    def _end(self, call: _Call, outcome: bytes | Failure, reset: ErrorCodes | None) -> None:
        """Forget ``call``, resetting its stream if it is still open, and give its outcome."""
        if self._calls.pop(call.stream_id, None) is None:
            return
        if call.timer is not None and call.timer.active():
            call.timer.cancel()
        if reset is not None and self.transport is not None:
            with contextlib.suppress(H2Error):  # the stream closed in the meantime: nothing to reset
                self._h2.reset_stream(call.stream_id, reset)
        if self.closed_reason is not None and not self._calls and self.transport is not None:
            self.transport.loseConnection()
        if not call.result.called:
            if isinstance(outcome, Failure):
                call.result.errback(outcome)
            else:
                call.result.callback(outcome)

    def _fail_all(self, reason: str) -> None:
        self.closed_reason = self.closed_reason or reason
        for call in list(self._calls.values()):
            self._end(call, Failure(GRPCError(StatusCode.UNAVAILABLE, reason)), None)

    def _write(self) -> None:
        data = self._h2.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)


_EVENTS: dict[type, Any] = {
    ResponseReceived: ClientConnection._response,
    DataReceived: ClientConnection._data,
    TrailersReceived: ClientConnection._trailers,
    StreamEnded: ClientConnection._stream_ended,
    StreamReset: ClientConnection._stream_reset,
    ConnectionTerminated: ClientConnection._terminated,
    WindowUpdated: ClientConnection._window_opened,
    RemoteSettingsChanged: ClientConnection._window_opened,
}


@implementer(IUnaryChannel)
class GRPCChannel:
    """Unary gRPC calls to one server, over an HTTP/2 connection made when needed.

    ``endpoint`` reaches the server (wrapped in TLS for ``https``); ``authority`` is its
    ``host:port``.  A connection that is lost or told GOAWAY is replaced on the next call.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        endpoint: IStreamClientEndpoint,
        authority: str,
        *,
        secure: bool = False,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self._reactor = reactor
        self._endpoint = endpoint
        self.authority = authority
        self._scheme = b"https" if secure else b"http"
        self._limit = max_message_bytes
        self._connection: ClientConnection | None = None
        self._waiting: list[Deferred[ClientConnection]] = []

    async def unary(
        self,
        path: str,
        request: Message,
        response_type: type[M],
        metadata: Sequence[tuple[str, str | bytes]] = (),
        timeout: float | None = None,
    ) -> M:
        """Call the unary method ``path`` (``/package.Service/Method``); the response message."""
        connection = await self._connect()
        payload = await connection.call(path, request.SerializeToString(), encode_metadata(metadata), timeout)
        try:
            return response_type.FromString(payload)
        except DecodeError as e:
            raise GRPCError(StatusCode.INTERNAL, f"grpc: failed to unmarshal the received message: {e}") from None

    async def close(self) -> None:
        """Close the connection, if any; calls still waiting fail with UNAVAILABLE."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    async def _connect(self) -> ClientConnection:
        """The open connection, or a new one shared by every call waiting for it."""
        connection = self._connection
        if connection is not None and connection.closed_reason is None:
            return connection
        waiter: Deferred[ClientConnection] = Deferred()
        self._waiting.append(waiter)
        if len(self._waiting) == 1:
            self._open()
        return await waiter

    def _open(self) -> None:
        connection = ClientConnection(self._reactor, self.authority.encode("idna"), self._scheme, self._limit)
        connected = connectProtocol(self._endpoint, connection)
        connected.addCallbacks(self._opened, self._not_opened, (connection,))

    def _opened(self, _: object, connection: ClientConnection) -> None:
        self._connection = connection
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.callback(connection)

    def _not_opened(self, reason: Failure) -> None:
        error = GRPCError(StatusCode.UNAVAILABLE, f"cannot connect to {self.authority}: {reason.getErrorMessage()}")
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.errback(Failure(error))


def channel_for(
    reactor: Any,
    url: str,
    *,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    connect_timeout: float = 10.0,
) -> GRPCChannel:
    """A channel to the server at ``url``: ``http://host:port``, or ``https://`` for TLS.

    TLS negotiates ALPN "h2", verifies the server against ``ca_file`` (the system's CAs
    without one) and presents ``cert_file``/``key_file`` when given.
    """
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"{url!r} is not an endpoint like http://host:port or https://host:port")
    port = parts.port or 2379
    endpoint: IStreamClientEndpoint = HostnameEndpoint(reactor, parts.hostname, port, timeout=connect_timeout)
    secure = parts.scheme == "https"
    if secure:
        endpoint = wrapClientTLS(_tls_options(parts.hostname, ca_file, cert_file, key_file), endpoint)
    elif ca_file or cert_file or key_file:
        raise ValueError(f"TLS files were given for {url}, which is not https://")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return GRPCChannel(reactor, endpoint, f"{host}:{port}", secure=secure)


def _tls_options(hostname: str, ca_file: str | None, cert_file: str | None, key_file: str | None) -> Any:
    if (cert_file is None) != (key_file is None):
        raise ValueError("a client certificate needs both its certificate file and its key file")
    if ca_file is None:
        trust = platformTrust()
    else:
        blocks = Path(ca_file).read_bytes().split(b"-----END CERTIFICATE-----")
        authorities = [
            Certificate.loadPEM(block + b"-----END CERTIFICATE-----") for block in blocks if b"-----BEGIN" in block
        ]
        if not authorities:
            raise ValueError(f"{ca_file} holds no PEM certificate")
        trust = trustRootFromCertificates(authorities)
    client = None
    if cert_file is not None and key_file is not None:
        client = PrivateCertificate.loadPEM(Path(cert_file).read_bytes() + b"\n" + Path(key_file).read_bytes())
    return optionsForClientTLS(hostname, trust, client, acceptableProtocols=[b"h2"])
