"""gRPC over one HTTP/2 connection, as a Twisted protocol, and the factory that serves it.

:class:`GRPCProtocol` feeds received bytes to an h2 state machine, dispatches its events
to one :class:`~k8s_sql.grpc.stream.ServerCall` per stream and writes what h2 produces.
It owns connection-wide flow control (acknowledging received data, sharing the client's
window between streams, pausing when the transport's buffer is full), keepalive pings to
clients gone quiet, and graceful shutdown with GOAWAY.  Its calls reach it only through
:class:`~k8s_sql.grpc.interfaces.ICallConnection`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    PingAckReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from k8s_sql.grpc.abuse import (
    BLOCKED_CALLS,
    DEFAULT_LIMITS,
    HEADER_LIST,
    MAX_CONCURRENT_STREAMS,
    WRITE_STALL,
    AbuseLimits,
    Breach,
    StallWatch,
)
from k8s_sql.grpc.frameguard import FrameInspector
from k8s_sql.grpc.headers import (
    RESPONSE_HEADERS,
    Header,
    MalformedRequest,
    RequestRejected,
    parse_request,
    rejection_headers,
    status_headers,
)
from k8s_sql.grpc.hpackcodec import Decoder, PreparedEncoder, prepare
from k8s_sql.grpc.interfaces import ICallConnection, IMethodLookup
from k8s_sql.grpc.status import GRPCError, StatusCode
from k8s_sql.grpc.stream import CallLimits, ServerCall

KiB = 1024
MiB = 1024 * KiB

#: The PING payload that marks the end of the first phase of a graceful close.
DRAIN_PING = b"drain\x00\x00\x00"
#: The PING payload of keepalive checks.
KEEPALIVE_PING = b"alive\x00\x00\x00"
#: etcd's defaults for its gRPC server keepalive, in seconds.
KEEPALIVE_INTERVAL = 2 * 3600.0
KEEPALIVE_TIMEOUT = 20.0
#: Seconds input is read and dropped after a GOAWAY for a broken limit, before the close.
GOAWAY_LINGER = 1.0
#: Seconds a connection may go without sending any response data while some waits for the
#: client (a zero flow-control window held, or a client that does not read) before it is closed.
WRITE_STALL_TIMEOUT = 300.0
_MAX_STREAM_ID = 2**31 - 1
#: The largest SETTINGS_MAX_CONCURRENT_STREAMS, etcd's default.
MAX_STREAMS = 2**32 - 1
_DEFAULT_WINDOW = 65535

#: ``call_observer(method, code, duration)``: see :class:`GRPCServerFactory`.
CallObserver = Callable[[str, StatusCode, float], None]
#: ``abuse_observer(kind)``: see :class:`GRPCServerFactory`.
AbuseObserver = Callable[[str], None]


#: The header blocks every call sends, encoded once: response headers and the OK trailers.
_PREPARED_BLOCKS = {
    tuple(headers): prepare(headers) for headers in (RESPONSE_HEADERS, status_headers(StatusCode.OK, ""))
}


class _H2Connection(H2Connection):
    """h2's server connection, leaving MAX_CONCURRENT_STREAMS to the protocol, with the
    HPACK encoder and decoder of ``k8s_sql.grpc.hpackcodec``.

    h2 ends the whole connection when a client opens a stream over the limit; the
    protocol refuses that stream alone (RST_STREAM REFUSED_STREAM, as grpc-go does), so
    h2's count is answered with 0.  h2 counts open streams (pruning closed ones from
    ``streams``) by scanning them all whenever a stream opens: quadratic on a connection
    that holds many long-lived streams (watches) while short calls come and go.  Here
    the table is pruned only once it has doubled since the last time.
    """

    _next_scan = 64

    def __init__(self, config: H2Configuration) -> None:
        super().__init__(config)
        self.encoder = PreparedEncoder(_PREPARED_BLOCKS)
        decoder = Decoder()
        decoder.max_header_list_size = self.decoder.max_header_list_size
        self.decoder = decoder

    @property
    def open_inbound_streams(self) -> int:
        """0, for h2's check of MAX_CONCURRENT_STREAMS (see the class); prunes closed streams."""
        if len(self.streams) >= self._next_scan:
            super().open_inbound_streams  # noqa: B018 - counting prunes
            self._next_scan = max(2 * len(self.streams), 64)
        return 0


@implementer(IPushProducer, ICallConnection)
class GRPCProtocol(Protocol):
    """One HTTP/2 connection carrying gRPC calls (server side)."""

    log = Logger()
    #: A TCP or TLS transport (``ITCPTransport``, ``IConsumer``), once connected.
    transport: Any

    def __init__(self, factory: GRPCServerFactory) -> None:
        self.factory = factory
        self._h2 = _H2Connection(factory._h2_config)
        self._h2.local_settings = Settings(client=False, initial_values=factory._local_settings)
        self._inspector = FrameInspector(
            factory.reactor, factory.abuse_limits, self._h2.max_inbound_frame_size, factory.max_header_list_size
        )
        self._calls: dict[int, ServerCall] = {}
        # Calls with output waiting for flow-control window or transport room, in turn order.
        self._waiting: dict[ServerCall, None] = {}
        #: Calls whose queued messages go out at the end of this reactor turn.
        self._sending: dict[ServerCall, None] = {}
        self._send_timer: IDelayedCall | None = None
        self._peer: Any = None
        self._paused = False
        #: While a batch of work runs (received data, or the calls sending at a turn's end),
        #: what h2 produces is written once, at its end.
        self._batching = False
        self._closed = False
        self._unacked = 0
        self._draining = False
        self._last_stream_id: int | None = None
        self._abort_timer: IDelayedCall | None = None
        self._clock = factory.reactor
        #: When the client last sent anything, in reactor seconds.
        self._last_heard = 0.0
        #: Whether a keepalive PING waits for the client to send anything.
        self._pinged = False
        self._keepalive: IDelayedCall | None = None
        self._stall = StallWatch(
            self._clock, factory.write_stall_timeout, self._inspector, self._output_waits, self._stalled
        )
        # Bytes read since the transport paused us (the client reads nothing), and whether
        # reading stopped for that.
        self._unanswered = 0
        self._reading_paused = False
        # The kinds of refusal (over MAX_CONCURRENT_STREAMS, calls blocked) this connection had.
        self._refused: set[str] = set()

    @property
    def open_calls(self) -> int:
        """How many calls are in progress on this connection."""
        return len(self._calls)

    def buffered(self) -> int:
        """Response bytes accepted from handlers and not yet handed to HTTP/2."""
        return sum(call.buffered for call in self._calls.values())

    # Protocol

    def connectionMade(self) -> None:
        """Send the server preface (SETTINGS) and open the connection window."""
        h2 = self._h2
        h2.initiate_connection()
        extra = self.factory.connection_window_size - _DEFAULT_WINDOW
        if extra > 0:
            h2.increment_flow_control_window(extra)
        self._peer = self.transport.getPeer()
        # A response is complete when it is written: Nagle's algorithm would hold it back
        # until the client acknowledged the previous one, up to its delayed-ACK timeout
        # (40 ms on Linux) whenever several calls are in flight.  TLS passes this through.
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        self.transport.registerProducer(self, True)
        self.flush()
        self._last_heard = self._clock.seconds()
        if self.factory.keepalive_interval:
            self._keepalive = self._clock.callLater(self.factory.keepalive_interval, self._check_alive)
        self.factory._connection_made(self)

    def dataReceived(self, data: bytes) -> None:
        """Feed h2 and dispatch what it makes of the bytes; answer in one write."""
        if self._closed:
            return
        self._last_heard = self._clock.seconds()
        self._pinged = False
        breach = self._inspector.inspect(data)
        if breach is not None:
            self._abused(breach)
            return
        if self._paused:
            self._read_unanswered(len(data))
        self._batching = True
        try:
            try:
                events = self._h2.receive_data(data)
            except ProtocolError as e:
                if e.error_code == ErrorCodes.ENHANCE_YOUR_CALM:
                    # h2's own defence: a header list over MAX_HEADER_LIST_SIZE once decoded.
                    self.factory.report_abuse(HEADER_LIST, self._peer, str(e))
                    self._close_now(GOAWAY_LINGER)
                else:
                    self.log.debug("HTTP/2 error from {peer}: {error!r}", peer=self._peer, error=e)
                    self._close_now()
                return
            handlers = _EVENT_HANDLERS
            if len(events) > 1:
                events = self._resets_first(events)
            for event in events:
                handler = handlers.get(type(event))
                if handler is not None:
                    handler(self, event)
                    if self._closed:
                        return
        finally:
            self._batching = False
        self.flush()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Cancel every call still running and forget the connection."""
        self._closed = True
        for timer in (self._abort_timer, self._keepalive, self._send_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._abort_timer = self._keepalive = self._send_timer = None
        self._sending.clear()
        self._stall.stop()
        for call in list(self._calls.values()):
            call.connection_lost()
        self._waiting.clear()
        self.factory._connection_lost(self)

    # IPushProducer: the transport asks us to stop writing while its buffer is full.

    def pauseProducing(self) -> None:
        """Stop handing response data to the transport."""
        self._paused = True
        self._unanswered = 0
        self._stall.start()

    def resumeProducing(self) -> None:
        """The transport has room again: continue waiting output (and reading, if that stopped)."""
        self._paused = False
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resumeProducing()
        self._flush_waiting()

    def stopProducing(self) -> None:
        """The transport is going away; ``connectionLost`` does the cleanup."""

    # Keepalive

    def _check_alive(self) -> None:
        """After ``keepalive_interval`` without a word from the client, PING it; close the
        connection if it stays silent ``keepalive_timeout`` more (gRPC's server keepalive)."""
        self._keepalive = None
        if self._closed:
            return
        factory = self.factory
        if self._pinged:
            self.log.info(
                "Closing the connection from {peer}: no answer to a keepalive ping in {timeout} s",
                peer=self._peer,
                timeout=factory.keepalive_timeout,
            )
            self.transport.abortConnection()
            return
        quiet = self._clock.seconds() - self._last_heard
        if quiet < factory.keepalive_interval:
            self._keepalive = self._clock.callLater(factory.keepalive_interval - quiet, self._check_alive)
            return
        self._pinged = True
        self._h2.ping(KEEPALIVE_PING)
        self.flush()
        self._keepalive = self._clock.callLater(factory.keepalive_timeout, self._check_alive)

    # Graceful shutdown

    def drain(self) -> None:
        """Begin a graceful close: accept no new calls, close once in-flight calls end.

        As HTTP/2 suggests, a first GOAWAY (last stream 2^31-1) and a PING tell the
        client to stop opening streams; once the PING returns, a second GOAWAY names
        the last stream accepted and later ones are refused.
        """
        if self._draining or self._closed:
            return
        self._draining = True
        self._send_goaway(_MAX_STREAM_ID)
        self._h2.ping(DRAIN_PING)
        self.flush()

    def stop(self, abort_after: float) -> None:
        """End every call UNAVAILABLE and close; drop the connection after ``abort_after`` s."""
        if self._closed:
            return
        for call in list(self._calls.values()):
            call.abort(StatusCode.UNAVAILABLE, "the server is shutting down")
        if self._last_stream_id is None:
            self._last_stream_id = self._h2.highest_inbound_stream_id
            self._send_goaway(self._last_stream_id)
        self._close_now()
        self._abort_timer = self.factory.reactor.callLater(abort_after, self.transport.abortConnection)

    # ICallConnection: what the calls of this connection ask of it

    def send_headers(self, stream_id: int, headers: Sequence[Header], end_stream: bool = False) -> None:
        """Queue a header block on ``stream_id``."""
        self._h2.send_headers(stream_id, headers, end_stream=end_stream)

    def room(self, stream_id: int) -> int:
        """How many bytes the next DATA frame of ``stream_id`` may carry now."""
        if self._paused:
            return 0
        h2 = self._h2
        return min(h2.local_flow_control_window(stream_id), h2.max_outbound_frame_size)

    def send_data(self, stream_id: int, data: bytes | memoryview) -> None:
        """Queue one DATA frame on ``stream_id``."""
        self._h2.send_data(stream_id, data)
        self._inspector.data_sent += 1

    def flush_soon(self, call: ServerCall) -> None:
        """Flush ``call`` at the end of this reactor turn, together with the other calls that
        queued messages in it: a call's messages of one turn share DATA frames, and the
        connection's output one write."""
        self._sending[call] = None
        if self._send_timer is None:
            self._send_timer = self._clock.callLater(0, self._send_queued)

    def _send_queued(self) -> None:
        self._send_timer = None
        calls = list(self._sending)
        self._sending.clear()
        self._batching = True
        try:
            for call in calls:
                call.flush()
        finally:
            self._batching = False
        self.flush()

    def wait_for_room(self, call: ServerCall) -> None:
        """Flush ``call`` once its stream may send again, in turn with the others waiting."""
        self._waiting[call] = None
        self._stall.start()

    def acknowledge(self, stream_id: int, size: int) -> None:
        """Open ``stream_id``'s receive window by ``size`` bytes."""
        self._h2.increment_flow_control_window(size, stream_id)

    def reset_stream(self, stream_id: int, code: ErrorCodes) -> None:
        """Queue RST_STREAM on ``stream_id``."""
        self._h2.reset_stream(stream_id, code)

    def remote_open(self, stream_id: int) -> bool:
        """Whether the client may still send on ``stream_id``."""
        stream = self._h2.streams.get(stream_id)
        return stream is not None and not stream.closed

    def flush(self) -> None:
        """Hand what h2 has produced to the transport (once per batch, while one runs)."""
        if not self._batching:
            data = self._h2.data_to_send()
            if data:
                self.transport.write(data)

    def call_finished(self, call: ServerCall, code: StatusCode, duration: float) -> None:
        """Forget ``call``; close the connection if it was the last one of a drain."""
        del self._calls[call.stream_id]
        self._waiting.pop(call, None)
        self._sending.pop(call, None)
        self.factory._call_finished(call.method, code, duration)
        if self._draining:
            self._close_if_idle()

    # Events

    def _request_received(self, event: RequestReceived) -> None:
        stream_id = event.stream_id
        if self._last_stream_id is not None and stream_id > self._last_stream_id:
            self._h2.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        factory = self.factory
        if len(self._calls) >= factory.max_concurrent_streams:
            self._refuse(stream_id, MAX_CONCURRENT_STREAMS, f"over the limit of {factory.max_concurrent_streams}")
            return
        if len(self._waiting) >= factory.abuse_limits.blocked_calls:
            self._refuse(stream_id, BLOCKED_CALLS, f"while {len(self._waiting)} calls wait for it to read")
            return
        try:
            head = parse_request(event.headers)
            method = factory.registry.lookup(head.path)
        except MalformedRequest as e:
            self.log.debug("Malformed request from {peer}: {error}", peer=self._peer, error=e)
            self._h2.reset_stream(stream_id, ErrorCodes.PROTOCOL_ERROR)
            self.factory.observe("", StatusCode.INTERNAL, 0.0)
            return
        except RequestRejected as e:
            self._reject(stream_id, e.http_status, e)
            return
        except GRPCError as e:
            self._reject(stream_id, 200, e)
            return
        call = ServerCall(self, stream_id, method, head, factory._limits, factory.reactor, self._peer)
        self._calls[stream_id] = call
        factory.open_calls += 1
        call.start()

    def _refuse(self, stream_id: int, kind: str, why: str) -> None:
        """Refuse a stream (REFUSED_STREAM, as grpc-go does over MAX_CONCURRENT_STREAMS):
        clients retry it.  Logged and counted once per connection and kind (clients may
        race the SETTINGS that lowered the limit); each counts as a reset stream."""
        self._h2.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
        if kind not in self._refused:
            self._refused.add(kind)
            self.factory.report_abuse(kind, self._peer, f"new streams are refused {why}")
        breach = self._inspector.stream_refused()
        if breach is not None:
            self._abused(breach)

    def _reject(self, stream_id: int, http_status: int, error: GRPCError | RequestRejected) -> None:
        self._h2.send_headers(stream_id, rejection_headers(http_status, error), end_stream=True)
        if self.remote_open(stream_id):
            self._h2.reset_stream(stream_id, ErrorCodes.NO_ERROR)
        self.factory.observe("", error.code, 0.0)

    def _data_received(self, event: DataReceived) -> None:
        length = event.flow_controlled_length
        if length:
            # The connection window reopens at once, so that a stream whose handler
            # reads slowly (its own window closes) cannot stall the others.
            self._unacked += length
            if self._unacked >= self.factory._connection_ack_threshold:
                self._h2.increment_flow_control_window(self._unacked)
                self._unacked = 0
        call = self._calls.get(event.stream_id)
        if call is not None:
            call.data_received(event.data, length, event.stream_ended is not None)

    def _stream_ended(self, event: StreamEnded) -> None:
        call = self._calls.get(event.stream_id)
        if call is not None:
            call.end_of_stream()

    def _stream_reset(self, event: StreamReset) -> None:
        call = self._calls.get(event.stream_id)
        if call is not None:
            call.reset_by_peer()

    def _window_updated(self, event: WindowUpdated) -> None:
        if event.stream_id == 0:
            self._flush_waiting()
            return
        call = self._calls.get(event.stream_id)
        if call is not None and call in self._waiting:
            del self._waiting[call]
            call.flush()

    def _settings_changed(self, event: RemoteSettingsChanged) -> None:
        if SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
            self._flush_waiting()

    def _ping_acknowledged(self, event: PingAckReceived) -> None:
        if event.ping_data == DRAIN_PING and self._draining and self._last_stream_id is None:
            self._last_stream_id = self._h2.highest_inbound_stream_id
            self._send_goaway(self._last_stream_id)
            self._close_if_idle()

    def _connection_terminated(self, event: ConnectionTerminated) -> None:
        # The client sent GOAWAY; h2 will send nothing more on this connection.
        self._close_now()

    # Internals

    def _resets_first(self, events: list[Any]) -> list[Any]:
        """Order a batch of events so that endings come first.

        h2 has already applied the whole batch: a stream reset later in it is closed
        in h2, and so is the connection after a GOAWAY.  Handling those first cancels
        the calls concerned before anything tries to answer on them; a stream opened
        and reset in the same batch is never started.
        """
        endings = [event for event in events if type(event) in _ENDINGS]
        if not endings:
            return events
        reset = {event.stream_id for event in endings if type(event) is StreamReset}
        return endings + [
            event
            for event in events
            if type(event) not in _ENDINGS and not (type(event) is RequestReceived and event.stream_id in reset)
        ]

    def _flush_waiting(self) -> None:
        """Give waiting calls their turn, in order, while there is room."""
        waiting = list(self._waiting)
        self._waiting.clear()
        h2 = self._h2
        for index, call in enumerate(waiting):
            if self._paused or h2.outbound_flow_control_window <= 0:
                # Those not served keep their place ahead of those that just had a turn.
                again = self._waiting
                self._waiting = dict.fromkeys(waiting[index:])
                self._waiting.update(again)
                return
            call.flush()

    def _send_goaway(self, last_stream_id: int, code: ErrorCodes = ErrorCodes.NO_ERROR, debug: bytes = b"") -> None:
        # Written directly: once h2 itself sends GOAWAY it refuses to send anything
        # more, and the calls in flight still have to finish.
        frame = GoAwayFrame(0, last_stream_id=last_stream_id, error_code=code, additional_data=debug)
        self.transport.write(self._h2.data_to_send() + frame.serialize())

    def _abused(self, breach: Breach) -> None:
        """The client broke a limit: log and count it, GOAWAY with its code, close.

        The bytes that broke it are not given to h2: the GOAWAY names the last stream h2
        has seen.  As Go's HTTP/2 server, input is read and dropped for a second before
        the close, so that the client gets the GOAWAY; a client that does not read cannot
        hold the connection open: it is dropped ``abort_after`` seconds later.
        """
        self.factory.report_abuse(breach.kind, self._peer, breach.detail)
        self._send_goaway(self._h2.highest_inbound_stream_id, breach.code, breach.kind.encode())
        self._close_now(GOAWAY_LINGER)

    def _read_unanswered(self, size: int) -> None:
        """Count bytes read while the client reads none of our output; past the limit, stop
        reading until it does (``resumeProducing``), as TCP would make it wait anyway."""
        self._unanswered += size
        if self._unanswered > self.factory.abuse_limits.unanswered_input and not self._reading_paused:
            self._reading_paused = True
            self.transport.pauseProducing()

    def _output_waits(self) -> bool:
        """Whether output waits for the client (its window, or the transport's room)."""
        return not self._closed and bool(self._waiting or self._paused)

    def _stalled(self) -> None:
        """Output waited ``write_stall_timeout`` with nothing sent: drop the connection."""
        self.factory.report_abuse(
            WRITE_STALL,
            self._peer,
            f"responses waited {self._stall.timeout:g} s for the client to read or open its window",
        )
        self._send_goaway(self._h2.highest_inbound_stream_id, ErrorCodes.ENHANCE_YOUR_CALM, WRITE_STALL.encode())
        self._close_now()
        # It does not read: what is buffered for it would never be flushed.
        self.transport.abortConnection()

    def _close_if_idle(self) -> None:
        if self._last_stream_id is not None and not self._calls and not self._closed:
            self._close_now()

    def _close_now(self, linger: float = 0.0) -> None:
        """Stop reading, cancel what still runs, close once written output is flushed.

        With ``linger``, input is still read (and dropped) that many seconds before the
        close: closing a socket with unread input resets the connection, and the client's
        kernel could discard our last frames (a GOAWAY saying why) unread.
        """
        self._closed = True
        for call in list(self._calls.values()):
            call.connection_lost()
        # Some transports (TLS) drop what is written after loseConnection.
        data = self._h2.data_to_send()
        if data:
            self.transport.write(data)
        if linger:
            self._abort_timer = self._clock.callLater(linger, self._stop_lingering)
        else:
            self.transport.loseConnection()

    def _stop_lingering(self) -> None:
        """Close after a linger; drop the connection if the client does not read what is left."""
        self._abort_timer = self._clock.callLater(self.factory.abort_after, self.transport.abortConnection)
        self.transport.loseConnection()


_ENDINGS = (StreamReset, ConnectionTerminated)
_EVENT_HANDLERS: dict[type, Callable[[GRPCProtocol, Any], None]] = {
    RequestReceived: GRPCProtocol._request_received,
    DataReceived: GRPCProtocol._data_received,
    StreamEnded: GRPCProtocol._stream_ended,
    StreamReset: GRPCProtocol._stream_reset,
    WindowUpdated: GRPCProtocol._window_updated,
    RemoteSettingsChanged: GRPCProtocol._settings_changed,
    PingAckReceived: GRPCProtocol._ping_acknowledged,
    ConnectionTerminated: GRPCProtocol._connection_terminated,
}


class GRPCServerFactory(Factory):
    """Serves the methods of ``registry`` on every connection it builds protocols for.

    :param max_receive_message_length: the largest request message accepted (bytes,
        before and after decompression); larger ones end their call RESOURCE_EXHAUSTED.
    :param initial_window_size: each stream's receive window, advertised in SETTINGS;
        it also bounds the unread request bytes buffered per call.
    :param connection_window_size: the connection's receive window.
    :param max_concurrent_streams: advertised in SETTINGS (etcd: 2^32-1).
    :param max_header_list_size: the largest request header block accepted.
    :param send_buffer: response bytes a call may buffer beyond the client's window
        before ``IServerCall.send`` stops firing at once.
    :param call_observer: called as ``call_observer(method, code, duration)`` when a
        call ends: its registered path (``""`` for a request refused before reaching a
        method), its :class:`StatusCode` (CANCELLED when the client went away) and its
        duration in reactor seconds.  A hook for metrics; it must not block.
    :param abort_after: after a shutdown's grace period, how long closing connections
        may take to flush before they are dropped.
    :param keepalive_interval: seconds without hearing from a client after which the
        server PINGs it (etcd's ``--grpc-keepalive-interval``); 0 never pings.
    :param keepalive_timeout: seconds a PINGed client has to send anything before its
        connection is closed (etcd's ``--grpc-keepalive-timeout``).
    :param abuse_limits: the budgets of each connection (:class:`AbuseLimits`); a client
        that breaks one gets GOAWAY (ENHANCE_YOUR_CALM) and its connection closes.
    :param write_stall_timeout: seconds a connection may send no response data while
        some waits for the client (a flow-control window it keeps closed, or a transport
        it does not read) before it is dropped; 0 never drops it.
    :param abuse_observer: called as ``abuse_observer(kind)`` each time a client breaks
        a limit (a breach kind of ``k8s_sql.grpc.abuse``: ``rapid_reset``, ``ping``,
        ...): a hook for metrics; it must not block.
    """

    log = Logger()
    noisy = False

    def __init__(
        self,
        registry: IMethodLookup,
        reactor: IReactorTime,
        *,
        max_receive_message_length: int = 2 * MiB,
        initial_window_size: int = 1 * MiB,
        connection_window_size: int = 16 * MiB,
        max_concurrent_streams: int = MAX_STREAMS,
        max_header_list_size: int = 64 * KiB,
        send_buffer: int = 64 * KiB,
        call_observer: CallObserver | None = None,
        abort_after: float = 5.0,
        keepalive_interval: float = KEEPALIVE_INTERVAL,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
        abuse_limits: AbuseLimits = DEFAULT_LIMITS,
        write_stall_timeout: float = WRITE_STALL_TIMEOUT,
        abuse_observer: AbuseObserver | None = None,
    ) -> None:
        for name, value, low, high in (
            ("max_receive_message_length", max_receive_message_length, 0, 2**32 - 1),
            ("initial_window_size", initial_window_size, _DEFAULT_WINDOW, _MAX_STREAM_ID),
            ("connection_window_size", connection_window_size, _DEFAULT_WINDOW, _MAX_STREAM_ID),
            ("max_concurrent_streams", max_concurrent_streams, 1, MAX_STREAMS),
            ("max_header_list_size", max_header_list_size, 1, 2**32 - 1),
            ("send_buffer", send_buffer, 0, 2**32 - 1),
        ):
            if not low <= value <= high:
                raise ValueError(f"{name} must be between {low} and {high}, not {value}")
        if keepalive_interval < 0 or keepalive_timeout <= 0:
            raise ValueError("keepalive_interval must be at least 0 and keepalive_timeout above 0")
        if write_stall_timeout < 0:
            raise ValueError("write_stall_timeout must be at least 0")
        self.registry = registry
        self.reactor = reactor
        self.call_observer = call_observer
        self.connection_window_size = connection_window_size
        self.abort_after = abort_after
        self.keepalive_interval = keepalive_interval
        self.keepalive_timeout = keepalive_timeout
        self.abuse_limits = abuse_limits
        self.write_stall_timeout = write_stall_timeout
        self.abuse_observer = abuse_observer
        self.max_concurrent_streams = max_concurrent_streams
        self.max_header_list_size = max_header_list_size
        #: The connections being served.
        self.connections: set[GRPCProtocol] = set()
        #: How many calls are in progress on all connections.
        self.open_calls = 0
        # Outbound headers are ours (metadata is checked by encode_metadata): h2 need not
        # validate them again.  Inbound headers are validated by parse_request in the pass
        # it makes anyway (a malformed request's stream is reset), cheaper than h2's checks.
        self._h2_config = H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
        )
        self._local_settings = {
            SettingCodes.MAX_CONCURRENT_STREAMS: max_concurrent_streams,
            SettingCodes.INITIAL_WINDOW_SIZE: initial_window_size,
            SettingCodes.MAX_HEADER_LIST_SIZE: max_header_list_size,
        }
        self._limits = CallLimits(
            max_receive_message_length=max_receive_message_length,
            receive_buffer=initial_window_size,
            ack_threshold=initial_window_size // 4,
            send_buffer=send_buffer,
        )
        self._connection_ack_threshold = connection_window_size // 4
        self._draining = False
        self._stopping = False
        self._grace_timer: IDelayedCall | None = None
        self._closed_waiters: list[Deferred[None]] = []

    def buildProtocol(self, addr: Any) -> GRPCProtocol:
        """A protocol for one new connection."""
        return GRPCProtocol(self)

    def buffered(self) -> int:
        """Response bytes accepted from handlers and not yet handed to HTTP/2, in total."""
        return sum(connection.buffered() for connection in self.connections)

    def shutdown(self, grace: float) -> Deferred[None]:
        """Close every connection gracefully; fire once all are closed.

        Each connection gets GOAWAY at once; calls in flight may finish within ``grace``
        seconds, after which they end UNAVAILABLE and the connections close.  Stop
        listening first: connections accepted later are closed the same way.
        """
        closed: Deferred[None] = Deferred()
        self._closed_waiters.append(closed)
        if not self._draining:
            self._draining = True
            for connection in list(self.connections):
                connection.drain()
            self._grace_timer = self.reactor.callLater(grace, self._stop_all)
        self._fire_if_closed()
        return closed

    def _stop_all(self) -> None:
        self._grace_timer = None
        self._stopping = True
        for connection in list(self.connections):
            connection.stop(self.abort_after)

    def _connection_made(self, connection: GRPCProtocol) -> None:
        self.connections.add(connection)
        if self._stopping:
            connection.stop(self.abort_after)
        elif self._draining:
            connection.drain()

    def _connection_lost(self, connection: GRPCProtocol) -> None:
        self.connections.discard(connection)
        self._fire_if_closed()

    def _fire_if_closed(self) -> None:
        if self._draining and not self.connections and self._closed_waiters:
            # Nothing is left to wait for: connections accepted from now on close at once.
            self._stopping = True
            timer, self._grace_timer = self._grace_timer, None
            if timer is not None:
                timer.cancel()
            waiters, self._closed_waiters = self._closed_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def _call_finished(self, method: str, code: StatusCode, duration: float) -> None:
        self.open_calls -= 1
        self.observe(method, code, duration)

    def report_abuse(self, kind: str, peer: Any, detail: str) -> None:
        """A client broke the limit ``kind``: log it (a warning) and tell the abuse observer."""
        self.log.warn("HTTP/2 limit broken by {peer}: {kind}: {detail}", peer=peer, kind=kind, detail=detail)
        observer = self.abuse_observer
        if observer is not None:
            try:
                observer(kind)
            except Exception:
                self.log.failure("The abuse observer failed")

    def observe(self, method: str, code: StatusCode, duration: float) -> None:
        """Report a call that ended (or a request refused, as method "") to the call observer."""
        observer = self.call_observer
        if observer is not None:
            try:
                observer(method, code, duration)
            except Exception:
                self.log.failure("The call observer failed")
