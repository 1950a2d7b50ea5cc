"""HTTP/2 abuse, frame by frame: each attack built here from frames, its GOAWAY, and the
other connections served on (a scripted h2 client over a StringTransport, a Clock)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import DataReceived
from h2.settings import SettingCodes
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, globalLogPublisher
from zope.interface import implementer
from zope.interface.verify import verifyObject

from k8s_sql.grpc.abuse import AbuseLimits
from k8s_sql.grpc.connections import ConnectionLimit
from k8s_sql.grpc.frameguard import FrameInspector
from k8s_sql.grpc.interfaces import IFrameInspector
from k8s_sql.grpc.protocol import GOAWAY_LINGER, GRPCServerFactory

from tests.grpc.h2peer import Peer, message, request_headers
from tests.grpc.service import SERVICE, TestService, make_factory

ECHO = SERVICE + "Echo"
CALM = ErrorCodes.ENHANCE_YOUR_CALM


@pytest.fixture
def seen() -> list[str]:
    """The kinds the server reported to its abuse observer."""
    return []


@pytest.fixture
def server(clock: Clock, seen: list[str]) -> tuple[GRPCServerFactory, TestService]:
    return make_factory(clock, abuse_observer=seen.append)


@pytest.fixture
def warnings() -> Iterator[list[dict]]:
    """Warnings logged through twisted.logger while the test runs."""
    events: list[dict] = []

    def observe(event: dict) -> None:
        if event.get("log_level") == LogLevel.warn:
            events.append(event)

    globalLogPublisher.addObserver(observe)
    yield events
    globalLogPublisher.removeObserver(observe)


def send(peer: Peer, frames: list[Frame], one_byte_at_a_time: bool = False) -> None:
    """Deliver what the client's h2 has queued, then ``frames`` as built."""
    peer.send_raw(peer.h2.data_to_send() + b"".join(frame.serialize() for frame in frames), one_byte_at_a_time)


def calmed(peer: Peer, kind: str, code: ErrorCodes = CALM) -> GoAwayFrame:
    """Check that the server sent GOAWAY ``code`` naming ``kind`` and closed; return the GOAWAY."""
    goaways = [frame for frame in peer.raw_frames() if isinstance(frame, GoAwayFrame)]
    assert goaways, "no GOAWAY"
    goaway = goaways[-1]
    assert (goaway.error_code, goaway.additional_data) == (code, kind.encode())
    assert not peer.protocol._calls
    # Input is read and dropped for a second, so that the client's kernel gets the GOAWAY
    # before the close (closing with unread input would reset the connection).
    assert not peer.closed
    peer.protocol.factory.reactor.advance(GOAWAY_LINGER)
    assert peer.closed
    return goaway


def still_served(factory: GRPCServerFactory) -> None:
    """Another client of the same factory gets its answer."""
    other = Peer(factory)
    assert other.response(other.call(ECHO, message(b"still here"))).messages() == [b"still here"]


def test_inspector_interface(clock: Clock) -> None:
    verifyObject(IFrameInspector, FrameInspector(clock, AbuseLimits(), 16384, 65536))


def test_after_the_goaway_input_is_dropped_and_the_client_must_read(clock: Clock, factory: GRPCServerFactory) -> None:
    peer = Peer(factory)
    send(peer, [PingFrame(0, opaque_data=b"%08d" % i) for i in range(101)])
    assert [type(frame) for frame in peer.raw_frames()][-1] is GoAwayFrame
    send(peer, [PingFrame(0, opaque_data=b"%08d" % i) for i in range(1000)])
    assert peer.raw_frames() == [] and not peer.closed
    clock.advance(GOAWAY_LINGER)
    assert peer.transport.disconnecting and not peer.transport.disconnected
    clock.advance(factory.abort_after)  # it does not read what is left
    assert peer.transport.disconnected
    peer.protocol.connectionLost()
    assert not clock.getDelayedCalls() and not factory.connections


def test_breach_is_logged_once_with_peer_and_kind(
    factory: GRPCServerFactory, seen: list[str], warnings: list[dict]
) -> None:
    peer = Peer(factory)
    send(peer, [PingFrame(0, opaque_data=b"%08d" % i) for i in range(101)])
    calmed(peer, "ping")
    assert seen == ["ping"]
    (warning,) = warnings
    assert warning["kind"] == "ping" and warning["peer"] == IPv4Address("TCP", "127.0.0.1", 40000)
    assert "more than 100 PING frames" in warning["detail"]


# Rapid reset (CVE-2023-44487)


def open_and_reset(peer: Peer, path: str = ECHO, body: bytes = message(b"x")) -> int:
    """Queue (not send) a call on a new stream, and its reset."""
    stream = peer.h2.get_next_available_stream_id()
    peer.h2.send_headers(stream, request_headers(path))
    peer.h2.send_data(stream, body)
    peer.h2.reset_stream(stream, ErrorCodes.CANCEL)
    return stream


def test_rapid_reset_in_one_write_is_calmed_before_any_work(
    factory: GRPCServerFactory, service: TestService, seen: list[str]
) -> None:
    peer = Peer(factory)
    for _ in range(1000):
        open_and_reset(peer, SERVICE + "Hang")
    peer.flush()
    goaway = calmed(peer, "rapid_reset")
    # The 201st reset broke the budget before h2 saw any of these streams.
    assert goaway.last_stream_id == 0 and service.started == 0
    assert seen == ["rapid_reset"]
    still_served(factory)


def test_a_stream_opened_and_reset_in_one_read_never_runs(
    factory: GRPCServerFactory, service: TestService
) -> None:
    peer = Peer(factory)
    for _ in range(100):
        open_and_reset(peer, SERVICE + "Hang")
        peer.flush()
    assert service.started == 0 and not peer.protocol._calls and not peer.closed


def test_rapid_reset_across_reads_is_calmed(factory: GRPCServerFactory, service: TestService) -> None:
    """Each stream's reset in a read of its own: the handler had started, and is cancelled."""
    peer = Peer(factory)
    for _ in range(250):
        stream = peer.h2.get_next_available_stream_id()
        peer.h2.send_headers(stream, request_headers(SERVICE + "Hang"))
        peer.h2.send_data(stream, message(b"x"))
        peer.flush()
        if peer.closed:
            break
        peer.h2.reset_stream(stream, ErrorCodes.CANCEL)
        peer.flush()
        if peer.closed:
            break
    calmed(peer, "rapid_reset")
    assert service.started == 201 and service.cancelled == 201 and factory.open_calls == 0
    still_served(factory)


def test_a_busy_client_may_cancel_a_third_of_its_calls(factory: GRPCServerFactory, service: TestService) -> None:
    peer = Peer(factory)
    for i in range(1500):
        if i % 3:
            assert peer.response(peer.call(ECHO, message(b"%d" % i))).messages() == [b"%d" % i]
        else:
            open_and_reset(peer)
            peer.flush()
    assert not peer.closed and not peer.protocol._calls


def test_resets_spread_over_windows_are_allowed(clock: Clock, factory: GRPCServerFactory) -> None:
    peer = Peer(factory)
    for _ in range(5):
        for _ in range(150):
            open_and_reset(peer)
        peer.flush()
        clock.advance(10)
    assert not peer.closed
    assert peer.response(peer.call(ECHO, message(b"ok"))).messages() == [b"ok"]


# Caps on streams


class _Heedless(H2Connection):
    """h2's client, opening streams whatever the server's MAX_CONCURRENT_STREAMS."""

    @property
    def open_outbound_streams(self) -> int:
        return 0


def ignore_stream_limit(peer: Peer) -> None:
    peer.h2.__class__ = _Heedless


def test_streams_over_the_limit_are_refused_and_the_connection_lives_on(
    clock: Clock, seen: list[str], warnings: list[dict]
) -> None:
    factory, service = make_factory(clock, max_concurrent_streams=10, abuse_observer=seen.append)
    peer = Peer(factory)
    assert peer.settings()[SettingCodes.MAX_CONCURRENT_STREAMS] == 10
    ignore_stream_limit(peer)
    held = [peer.call(SERVICE + "Hang", message(b"%d" % i)) for i in range(12)]
    assert [peer.responses[stream].reset for stream in held[10:]] == [ErrorCodes.REFUSED_STREAM] * 2
    assert factory.open_calls == 10 and not peer.closed
    assert seen == ["max_concurrent_streams"] and len(warnings) == 1
    for waiting in list(service.hanging):
        waiting.callback(None)
    assert [peer.response(stream).messages() for stream in held[:10]] == [[b"%d" % i] for i in range(10)]
    assert peer.response(peer.call(ECHO, message(b"again"))).messages() == [b"again"]
    assert seen == ["max_concurrent_streams"]  # once per connection


def test_a_client_flooding_past_the_stream_limit_is_calmed(clock: Clock, seen: list[str]) -> None:
    factory, service = make_factory(clock, max_concurrent_streams=10, abuse_observer=seen.append)
    peer = Peer(factory)
    ignore_stream_limit(peer)
    for i in range(300):
        stream = peer.h2.get_next_available_stream_id()
        peer.h2.send_headers(stream, request_headers(SERVICE + "Hang"))
        peer.h2.send_data(stream, message(b"%d" % i))
    peer.flush()
    calmed(peer, "rapid_reset")
    assert seen == ["max_concurrent_streams", "rapid_reset"] and service.cancelled == 10
    still_served(factory)


# Floods of frames that ask for an answer or for work


@pytest.mark.parametrize("one_byte_at_a_time", [False, True])
def test_ping_flood_is_calmed(factory: GRPCServerFactory, one_byte_at_a_time: bool) -> None:
    peer = Peer(factory)
    send(peer, [PingFrame(0, opaque_data=b"%08d" % i) for i in range(101)], one_byte_at_a_time)
    calmed(peer, "ping")
    still_served(factory)


def test_pings_spread_over_time_are_answered(clock: Clock, factory: GRPCServerFactory) -> None:
    peer = Peer(factory)
    for _ in range(5):
        send(peer, [PingFrame(0, opaque_data=b"%08d" % i) for i in range(100)])
        clock.advance(10)
    acks = [frame for frame in peer.raw_frames() if isinstance(frame, PingFrame)]
    assert len(acks) == 500 and not peer.closed


def test_settings_flood_is_calmed(factory: GRPCServerFactory) -> None:
    peer = Peer(factory)
    send(peer, [SettingsFrame(0, settings={SettingCodes.ENABLE_PUSH: 0}) for _ in range(101)])
    calmed(peer, "settings")
    still_served(factory)


@pytest.mark.parametrize("padded", [False, True])
def test_empty_data_flood_is_calmed(factory: GRPCServerFactory, service: TestService, padded: bool) -> None:
    peer = Peer(factory)
    stream = peer.call(SERVICE + "Collect", end=False)
    frames = [DataFrame(stream, data=b"") for _ in range(101)]
    if padded:  # padding only: as empty, though it takes flow-control window
        for frame in frames:
            frame.flags.add("PADDED")
            frame.pad_length = 0
    send(peer, frames)
    calmed(peer, "empty_data")
    still_served(factory)


def test_window_update_flood_is_calmed(factory: GRPCServerFactory) -> None:
    peer = Peer(factory)
    send(peer, [WindowUpdateFrame(0, window_increment=1) for _ in range(101)])
    calmed(peer, "window_update")
    still_served(factory)


def test_window_updates_beside_response_data_are_fine(factory: GRPCServerFactory) -> None:
    peer = Peer(factory)
    for i in range(300):
        peer.call(ECHO, message(b"%d" % i))
        send(peer, [WindowUpdateFrame(0, window_increment=1)])
    assert not peer.closed


def test_priority_flood_is_calmed(factory: GRPCServerFactory) -> None:
    peer = Peer(factory)
    send(peer, [PriorityFrame(1, depends_on=0, stream_weight=15) for _ in range(1001)])
    calmed(peer, "priority")
    still_served(factory)


# Header blocks


def start_block(peer: Peer, first: bytes) -> int:
    """Begin a header block on a new stream with ``first``, without END_HEADERS."""
    stream = peer.h2.get_next_available_stream_id()
    send(peer, [HeadersFrame(stream, data=first, flags=["END_STREAM"])])
    peer.h2.highest_outbound_stream_id = stream
    return stream


def test_continuation_flood_is_calmed(factory: GRPCServerFactory) -> None:
    peer = Peer(factory)
    block = peer.h2.encoder.encode(request_headers(ECHO))
    stream = start_block(peer, block[:10])
    for _ in range(16):
        send(peer, [ContinuationFrame(stream, data=b"")])
    assert not peer.closed
    send(peer, [ContinuationFrame(stream, data=b"")])
    calmed(peer, "continuation")
    still_served(factory)


def test_a_header_block_over_the_list_size_is_refused_as_it_grows(factory: GRPCServerFactory) -> None:
    """Four full frames (64 KiB, the limit) are buffered; the fifth is refused unread."""
    peer = Peer(factory)
    stream = start_block(peer, b"\x00" * 16384)
    for _ in range(3):
        send(peer, [ContinuationFrame(stream, data=b"\x00" * 16384)])
    assert not peer.closed
    send(peer, [ContinuationFrame(stream, data=b"\x00" * 16384)])
    calmed(peer, "header_list")
    still_served(factory)


def test_a_small_block_decoding_to_a_large_header_list_is_refused(
    factory: GRPCServerFactory, seen: list[str]
) -> None:
    """HPACK indexing: the first copy enters the dynamic table, the others cost a byte each."""
    peer = Peer(factory)
    stream = peer.h2.get_next_available_stream_id()
    block = peer.h2.encoder.encode(request_headers(ECHO, *[(b"x-big", b"b" * 3000)] * 30))
    assert len(block) < 4000  # decoded: over 90,000 bytes of header list
    send(peer, [HeadersFrame(stream, data=block, flags=["END_HEADERS", "END_STREAM"])])
    # h2's own defence, once the block is decoded: its GOAWAY has no debug data.
    (goaway,) = [frame for frame in peer.raw_frames() if isinstance(frame, GoAwayFrame)]
    factory.reactor.advance(GOAWAY_LINGER)
    assert goaway.error_code == CALM and peer.closed and seen == ["header_list"]
    still_served(factory)


def test_an_overlong_frame_is_refused_as_its_header_arrives(factory: GRPCServerFactory, seen: list[str]) -> None:
    peer = Peer(factory)
    stream = peer.call(SERVICE + "Collect", end=False)
    send(peer, [DataFrame(stream, data=b"d" * 20000)])
    calmed(peer, "frame_size", code=ErrorCodes.FRAME_SIZE_ERROR)
    assert seen == ["frame_size"]


# Clients that do not read


def test_a_zero_window_held_forever_is_dropped(clock: Clock, seen: list[str]) -> None:
    factory, service = make_factory(clock, abuse_observer=seen.append, write_stall_timeout=300)
    peer = Peer(factory, settings={SettingCodes.INITIAL_WINDOW_SIZE: 0}, auto_window=False)
    stream = peer.call(SERVICE + "Count", message(b"1000:1000"))
    assert not peer.response(stream).data
    # The handler waits: what it queued stays within the call's send buffer.
    assert service.sent == 64 * 1024 // 1005 and factory.buffered() <= 64 * 1024 + 1005
    clock.advance(299)
    assert not peer.closed
    clock.advance(1)
    assert peer.transport.disconnected and seen == ["write_stall"]
    goaway = [frame for frame in peer.raw_frames() if isinstance(frame, GoAwayFrame)][-1]
    assert (goaway.error_code, goaway.additional_data) == (CALM, b"write_stall")
    peer.protocol.connectionLost()
    assert factory.open_calls == 0 and not clock.getDelayedCalls()
    still_served(factory)


def test_new_streams_are_refused_while_too_many_calls_wait_for_the_window(clock: Clock, seen: list[str]) -> None:
    factory, service = make_factory(clock, abuse_observer=seen.append, abuse_limits=AbuseLimits(blocked_calls=5))
    peer = Peer(factory, settings={SettingCodes.INITIAL_WINDOW_SIZE: 0}, auto_window=False)
    waiting = [peer.call(ECHO, message(b"%d" % i)) for i in range(5)]
    refused = peer.call(ECHO, message(b"no"))
    assert peer.responses[refused].reset == ErrorCodes.REFUSED_STREAM and seen == ["blocked_calls"]
    assert not any(peer.responses[stream].data for stream in waiting)
    peer.h2.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 65535})
    peer.flush()
    assert [peer.response(stream).messages() for stream in waiting] == [[b"%d" % i] for i in range(5)]
    assert peer.response(peer.call(ECHO, message(b"yes"))).messages() == [b"yes"]
    assert not peer.closed and seen == ["blocked_calls"]


def test_a_slow_reader_is_kept_while_something_goes_out(clock: Clock, seen: list[str]) -> None:
    factory, service = make_factory(clock, abuse_observer=seen.append, write_stall_timeout=300)
    peer = Peer(factory, settings={SettingCodes.INITIAL_WINDOW_SIZE: 0}, auto_window=False)
    stream = peer.call(SERVICE + "Count", message(b"100:1000"))
    for _ in range(20):
        clock.advance(299)
        peer.h2.increment_flow_control_window(5000, stream)
        peer.h2.increment_flow_control_window(5000)
        peer.flush()
    assert not peer.closed and seen == [] and len(peer.response(stream).data) == 20 * 5000


def test_reading_stops_while_the_client_reads_nothing(clock: Clock, factory: GRPCServerFactory) -> None:
    peer = Peer(factory)
    stream = peer.call(SERVICE + "Collect", end=False)
    peer.protocol.pauseProducing()  # the transport's buffer is full: the client does not read
    chunk = message(b"c" * 16000)
    sent = 0
    while peer.transport.producerState == "producing":
        peer.h2.send_data(stream, chunk)
        peer.flush()
        peer.pump()  # the server's window updates (the test reads what the server's client does not)
        sent += len(chunk)
        assert sent < 2 * 1024 * 1024
    assert 1024 * 1024 < sent <= 1024 * 1024 + len(chunk) and not peer.closed
    peer.protocol.resumeProducing()
    assert peer.transport.producerState == "producing"


def test_a_client_that_never_reads_is_dropped(clock: Clock, seen: list[str]) -> None:
    factory, _ = make_factory(clock, abuse_observer=seen.append, write_stall_timeout=60)
    peer = Peer(factory)
    peer.protocol.pauseProducing()
    clock.advance(60)
    assert peer.transport.disconnected and seen == ["write_stall"]


def test_write_stall_timeout_can_be_turned_off(clock: Clock) -> None:
    factory, _ = make_factory(clock, write_stall_timeout=0, keepalive_interval=0)
    peer = Peer(factory, settings={SettingCodes.INITIAL_WINDOW_SIZE: 0}, auto_window=False)
    peer.call(SERVICE + "Count", message(b"10:1000"))
    peer.protocol.pauseProducing()
    assert not clock.getDelayedCalls() and not peer.closed


# The cap on connections


class Recorder(Protocol):
    """A connection that records what it is told."""

    def __init__(self) -> None:
        self.received = b""
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: object = None) -> None:
        self.lost = True


@implementer(IHandshakeListener)
class HandshakeRecorder(Recorder):
    handshakes = 0

    def handshakeCompleted(self) -> None:
        self.handshakes += 1


def connect(limit: ConnectionLimit, port: int) -> tuple[Protocol, StringTransport]:
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
    protocol = limit.buildProtocol(transport.getPeer())
    protocol.makeConnection(transport)
    return protocol, transport


def test_connections_over_the_cap_are_closed_at_once(clock: Clock, warnings: list[dict]) -> None:
    seen: list[str] = []
    limit = ConnectionLimit(Factory.forProtocol(HandshakeRecorder), 2, clock, "tcp:2379", seen.append)
    (first, first_transport), (second, _) = connect(limit, 1), connect(limit, 2)
    assert limit.open_connections == 2
    refused = [connect(limit, 3 + i)[1] for i in range(3)]
    assert all(transport.disconnected and not transport.value() for transport in refused)
    assert seen == ["max_connections"] * 3 and limit.open_connections == 2
    (warning,) = warnings  # logged at most once per interval
    assert (warning["count"], warning["endpoint"], warning["limit"]) == (1, "tcp:2379", 2)
    clock.advance(10)
    connect(limit, 9)
    assert [w["count"] for w in warnings] == [1, 3]
    # The connections within the cap are the wrapped factory's, TLS handshakes passed on.
    first.dataReceived(b"hello")
    first.handshakeCompleted()
    inner = first.wrappedProtocol
    assert inner.received == b"hello" and inner.handshakes == 1
    first.connectionLost(None)
    assert inner.lost and limit.open_connections == 1
    third, transport = connect(limit, 10)
    assert not transport.disconnected and limit.open_connections == 2


def test_grpc_is_served_through_the_cap(clock: Clock, factory: GRPCServerFactory) -> None:
    limit = ConnectionLimit(factory, 1, clock)
    protocol, transport = connect(limit, 1)
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    stream = client.get_next_available_stream_id()
    client.send_headers(stream, request_headers(ECHO))
    client.send_data(stream, message(b"through"), end_stream=True)
    protocol.dataReceived(client.data_to_send())
    events = client.receive_data(transport.value())
    assert b"".join(event.data for event in events if isinstance(event, DataReceived)) == message(b"through")
    assert connect(limit, 2)[1].disconnected
