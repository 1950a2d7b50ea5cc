"""Frame-level tests of GRPCProtocol: an h2 client scripted by the test, a StringTransport, a Clock."""

from __future__ import annotations

import gzip
import itertools
import json
import struct

import pytest
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated, DataReceived, PingAckReceived
from h2.settings import SettingCodes
from hyperframe.frame import ContinuationFrame, DataFrame, GoAwayFrame, HeadersFrame, PingFrame, RstStreamFrame
from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from k8s_sql.grpc.abuse import AbuseLimits
from k8s_sql.grpc.interfaces import ICallConnection, IServerCall
from k8s_sql.grpc.protocol import DRAIN_PING, GOAWAY_LINGER, KEEPALIVE_PING, GRPCServerFactory
from k8s_sql.grpc.registry import MethodRegistry
from k8s_sql.grpc.status import StatusCode
from k8s_sql.proto.health_pb2 import HealthCheckRequest, HealthCheckResponse

from tests.grpc.h2peer import Peer, message, request_headers
from tests.grpc.service import SERVICE, TestService, live_objects, make_factory

MiB = 1024 * 1024


@pytest.fixture
def peer(factory: GRPCServerFactory) -> Peer:
    return Peer(factory)


@pytest.fixture
def failures() -> list[dict]:
    """Failures logged through twisted.logger while the test runs."""
    events: list[dict] = []

    def observe(event: dict) -> None:
        if "log_failure" in event:
            events.append(event)

    globalLogPublisher.addObserver(observe)
    yield events
    globalLogPublisher.removeObserver(observe)


def lose(peer: Peer) -> None:
    """The TCP connection under ``peer`` goes away."""
    peer.protocol.connectionLost(Failure(ConnectionError("gone")))


# Connection set-up


def test_settings_raise_limits_and_windows(peer: Peer) -> None:
    assert peer.settings()[SettingCodes.MAX_CONCURRENT_STREAMS] == 2**32 - 1
    assert peer.settings()[SettingCodes.INITIAL_WINDOW_SIZE] == 1 * MiB
    assert peer.h2.outbound_flow_control_window == 16 * MiB


def test_options_are_validated(clock: Clock) -> None:
    with pytest.raises(ValueError, match="initial_window_size"):
        GRPCServerFactory(MethodRegistry(), clock, initial_window_size=2**31)


def test_interfaces(peer: Peer, service: TestService) -> None:
    verifyObject(IPushProducer, peer.protocol)
    verifyObject(ICallConnection, peer.protocol)
    peer.call(SERVICE + "Hang", message(b""))
    (call,) = peer.protocol._calls.values()
    verifyObject(IServerCall, call)


# Calls


def test_unary_fed_one_byte_at_a_time(peer: Peer) -> None:
    stream = peer.call(SERVICE + "Echo", message(b"hello"), one_byte_at_a_time=True)
    response = peer.response(stream)
    assert response.headers == {b":status": b"200", b"content-type": b"application/grpc"}
    assert response.messages() == [b"hello"]
    assert response.status == 0 and response.ended


def test_messages_split_across_data_frames_in_any_way(peer: Peer) -> None:
    payloads = [b"", b"a", b"bc" * 1000, b"d" * 7]
    body = b"".join(message(p) for p in payloads)
    stream = peer.call(SERVICE + "Collect", end=False)
    cuts = [0, 1, 3, 4, 5, 6, 11, 500, 2003, 2010, len(body)]
    for start, stop in itertools.pairwise(cuts):
        peer.h2.send_data(stream, body[start:stop])
    peer.h2.end_stream(stream)
    peer.flush()
    assert peer.response(stream).messages() == [b"4:2008"]


def test_plain_function_and_deferred_handlers(peer: Peer, service: TestService) -> None:
    assert peer.response(peer.call(SERVICE + "Plain", message(b"abc"))).messages() == [b"cba"]
    stream = peer.call(SERVICE + "Late", message(b""))
    assert peer.response(stream).status is None
    service.hanging[0].callback(b"later")
    assert peer.response(stream).messages() == [b"later"]


def test_bidi_answers_each_message_as_it_comes(peer: Peer) -> None:
    stream = peer.call(SERVICE + "Chat", message(b"one"), end=False)
    assert peer.response(stream).messages() == [b"one"]
    peer.h2.send_data(stream, message(b"two"), end_stream=True)
    peer.flush()
    response = peer.response(stream)
    assert response.messages() == [b"one", b"two"] and response.status == 0


def test_large_response_is_cut_to_the_frame_size(peer: Peer) -> None:
    stream = peer.call(SERVICE + "Count", message(b"1:100000"))
    frames = [e for e in peer.events if type(e).__name__ == "DataReceived" and e.stream_id == stream]
    assert max(len(e.data) for e in frames) <= 16384
    assert peer.response(stream).messages() == [b"x" * 100000]


def test_health_check_serves(peer: Peer) -> None:
    request = HealthCheckRequest(service="").SerializeToString()
    response = peer.response(peer.call("/grpc.health.v1.Health/Check", message(request)))
    assert HealthCheckResponse.FromString(response.messages()[0]).status == HealthCheckResponse.SERVING
    unknown = HealthCheckRequest(service="nope").SerializeToString()
    response = peer.response(peer.call("/grpc.health.v1.Health/Check", message(unknown)))
    assert response.status == StatusCode.NOT_FOUND


def test_metadata_in_and_trailing_metadata_out(peer: Peer) -> None:
    headers = [(b"x-plain", b"v1"), (b"x-plain", b"v2"), (b"x-key-bin", b"AAH/"), (b"x-short-bin", b"AQ")]
    stream = peer.call(SERVICE + "Metadata", message(b""), headers=headers)
    response = peer.response(stream)
    seen = json.loads(response.messages()[0])
    assert ["x-plain", "v1"] in seen["metadata"] and ["x-plain", "v2"] in seen["metadata"]
    assert ["x-key-bin", "0001ff"] in seen["metadata"] and ["x-short-bin", "01"] in seen["metadata"]
    assert not any(name in ("content-type", "te") or name.startswith(":") for name, _ in seen["metadata"])
    assert seen["method"] == "/test.Test/Metadata" and seen["deadline"] is None
    assert response.trailers[b"x-trailer"] == b"yes"
    assert response.trailers[b"x-blob-bin"] == b"AAH/"


# Statuses


def test_unknown_service_and_method_are_trailers_only(peer: Peer) -> None:
    response = peer.response(peer.call("/no.Such/Thing", message(b"")))
    assert response.trailers is None and response.ended
    assert response.headers[b":status"] == b"200"
    assert response.headers[b"content-type"] == b"application/grpc"
    assert response.status == StatusCode.UNIMPLEMENTED
    assert response.message == b"unknown service no.Such"
    response = peer.response(peer.call(SERVICE + "Nothing", message(b"")))
    assert response.message == b"unknown method Nothing for service test.Test"


def test_error_message_is_percent_encoded(peer: Peer) -> None:
    stream = peer.call(SERVICE + "Fail", message("9:100% fine ünïcode\n".encode()))
    response = peer.response(stream)
    assert response.status == StatusCode.FAILED_PRECONDITION
    assert response.message == b"100%25 fine %C3%BCn%C3%AFcode%0A"
    assert response.trailers is None  # nothing was sent: Trailers-Only


def test_handler_exception_is_unknown_and_logged(peer: Peer, failures: list[dict]) -> None:
    response = peer.response(peer.call(SERVICE + "Crash", message(b"")))
    assert response.status == StatusCode.UNKNOWN
    assert response.message == b"Exception calling application: boom"
    assert [event["log_failure"].type for event in failures] == [ValueError]
    assert failures[0]["log_level"] == LogLevel.error


def test_wrong_content_type_is_415(peer: Peer) -> None:
    stream = peer.h2.get_next_available_stream_id()
    peer.h2.send_headers(stream, request_headers(SERVICE + "Echo", content_type=b"application/json"), end_stream=True)
    peer.flush()
    response = peer.response(stream)
    assert response.headers[b":status"] == b"415"
    assert response.status == StatusCode.INVALID_ARGUMENT
    assert response.message == b'invalid gRPC request content-type "application/json"'


@pytest.mark.parametrize(("headers", "method", "http_status", "text"), [
    ([(b"grpc-timeout", b"18f6n")], b"POST", b"400", b"malformed grpc-timeout"),
    ([(b"grpc-timeout", b"123456789S")], b"POST", b"400", b"malformed grpc-timeout"),
    ([(b"x-bin", b"X()3e@#$-")], b"POST", b"400", b'header "x-bin": illegal base64 data'),
    ([], b"PUT", b"405", b"which should be POST"),
])
def test_malformed_requests_are_refused(peer: Peer, headers: list, method: bytes, http_status: bytes,
                                        text: bytes) -> None:
    stream = peer.h2.get_next_available_stream_id()
    peer.h2.send_headers(stream, request_headers(SERVICE + "Echo", *headers, method=method), end_stream=False)
    peer.flush()
    response = peer.response(stream)
    assert response.headers[b":status"] == http_status
    assert response.status == StatusCode.INTERNAL
    assert text in response.message
    assert response.reset == ErrorCodes.NO_ERROR  # the client had not finished sending


def test_unknown_encoding_is_unimplemented_with_accepted_encodings(peer: Peer) -> None:
    stream = peer.call(SERVICE + "Echo", message(b"x", flag=1), headers=[(b"grpc-encoding", b"snappy")])
    response = peer.response(stream)
    assert response.status == StatusCode.UNIMPLEMENTED
    assert response.headers[b"grpc-accept-encoding"] == b"identity,gzip"


def test_gzip_messages_are_accepted(peer: Peer) -> None:
    stream = peer.call(SERVICE + "Echo", message(gzip.compress(b"squeezed"), flag=1),
                       headers=[(b"grpc-encoding", b"gzip")])
    assert peer.response(stream).messages() == [b"squeezed"]


def test_compressed_flag_without_encoding_is_internal(peer: Peer) -> None:
    response = peer.response(peer.call(SERVICE + "Echo", message(b"x", flag=1)))
    assert response.status == StatusCode.INTERNAL
    assert response.message == b"grpc: compressed flag set with identity or empty encoding"


def test_gzip_bomb_is_resource_exhausted(factory: GRPCServerFactory, peer: Peer) -> None:
    bomb = gzip.compress(b"\0" * (3 * MiB))
    response = peer.response(peer.call(SERVICE + "Echo", message(bomb, flag=1), headers=[(b"grpc-encoding", b"gzip")]))
    assert response.status == StatusCode.RESOURCE_EXHAUSTED


def test_oversized_message_is_refused_and_the_connection_lives_on(peer: Peer) -> None:
    stream = peer.call(SERVICE + "Collect", struct.pack(">BI", 0, 2 * MiB + 1), end=False)
    response = peer.response(stream)
    assert response.status == StatusCode.RESOURCE_EXHAUSTED
    assert response.message == b"grpc: received message larger than max (2097153 vs. 2097152)"
    assert response.reset == ErrorCodes.NO_ERROR
    assert peer.response(peer.call(SERVICE + "Echo", message(b"still here"))).messages() == [b"still here"]


def test_message_at_the_limit_is_accepted(peer: Peer) -> None:
    payload = b"y" * (2 * MiB)
    stream = peer.call(SERVICE + "Echo", message(payload))
    assert peer.response(stream).messages() == [payload]


def test_invalid_protobuf_is_internal(peer: Peer) -> None:
    response = peer.response(peer.call("/grpc.health.v1.Health/Check", message(b"\xff\xff\xff")))
    assert response.status == StatusCode.INTERNAL
    assert response.message.startswith(b"grpc: error unmarshalling request: ")


def test_unary_without_a_request_is_internal(peer: Peer) -> None:
    response = peer.response(peer.call(SERVICE + "Echo"))
    assert response.status == StatusCode.INTERNAL
    assert b"received no request message" in response.message


def test_unary_answers_its_first_message_and_reads_no_further(peer: Peer) -> None:
    """As grpc-go (etcd): the first message runs the handler; what follows, even garbage, is not read."""
    for rest in (message(b"2"), b"\x00\x00", message(b"3" * 10, flag=7)):
        response = peer.response(peer.call(SERVICE + "Echo", message(b"1") + rest))
        assert (response.status, response.messages()) == (StatusCode.OK, [b"1"])


def test_unary_answers_before_the_client_half_closes(peer: Peer) -> None:
    stream = peer.call(SERVICE + "Echo", message(b"early"), end=False)
    response = peer.response(stream)
    assert (response.status, response.messages(), response.reset) == (StatusCode.OK, [b"early"], ErrorCodes.NO_ERROR)


def test_unary_stream_ending_mid_message_is_unknown(peer: Peer) -> None:
    """grpc-go's processUnaryRPC reports the read error itself: UNKNOWN, where etcd 3.5 answers 2."""
    for cut in (message(b"whole")[:-1], message(b"whole")[:3]):
        response = peer.response(peer.call(SERVICE + "Echo", cut))
        assert (response.status, response.message) == (StatusCode.UNKNOWN, b"unexpected EOF")


# Cancellation and deadlines


def test_rst_stream_cancels_the_handler(peer: Peer, factory: GRPCServerFactory, service: TestService) -> None:
    stream = peer.call(SERVICE + "Hang", message(b""))
    assert service.started == 1 and factory.open_calls == 1
    peer.h2.reset_stream(stream, ErrorCodes.CANCEL)
    peer.flush()
    assert service.cancelled == 1 and not service.hanging
    assert factory.open_calls == 0 and not peer.protocol._calls


def test_deadline_cancels_the_handler(clock: Clock, peer: Peer, factory: GRPCServerFactory,
                                      service: TestService) -> None:
    stream = peer.call(SERVICE + "Hang", message(b""), headers=[(b"grpc-timeout", b"250m")])
    (call,) = peer.protocol._calls.values()
    assert call.deadline == pytest.approx(0.25)
    clock.advance(0.2)
    assert service.cancelled == 0
    clock.advance(0.05)
    response = peer.response(stream)
    assert response.status == StatusCode.DEADLINE_EXCEEDED
    assert service.cancelled == 1 and factory.open_calls == 0
    # Only the connection's keepalive check is left.
    assert clock.getDelayedCalls() == [peer.protocol._keepalive]


def test_deadline_mid_message_resets_the_stream(clock: Clock, factory: GRPCServerFactory) -> None:
    peer = Peer(factory, auto_window=False)
    stream = peer.call(SERVICE + "Count", message(b"1:200000"), headers=[(b"grpc-timeout", b"1S")])
    assert 0 < len(peer.response(stream).data) < 200005
    clock.advance(1)
    assert peer.response(stream).reset == ErrorCodes.CANCEL
    assert factory.open_calls == 0


def test_data_then_reset_in_one_read(peer: Peer, factory: GRPCServerFactory, service: TestService) -> None:
    for _ in range(15):
        streaming = peer.call(SERVICE + "Idle", end=False)
        peer.send_data(streaming, message(b"d" * 300000))  # more than the stream's ack threshold
        peer.h2.reset_stream(streaming)
        unary = peer.h2.get_next_available_stream_id()
        peer.h2.send_headers(unary, request_headers(SERVICE + "Echo"))
        peer.h2.send_data(unary, message(b"e"), end_stream=True)
        peer.h2.reset_stream(unary)
        peer.flush()
        peer.pump()
        assert unary not in peer.responses  # never started, never answered
    assert service.cancelled == 15 and factory.open_calls == 0 and not peer.closed
    # The data of reset streams still counts for the connection window, which reopened.
    assert peer.h2.outbound_flow_control_window > 16 * MiB - 4 * MiB
    assert peer.response(peer.call(SERVICE + "Echo", message(b"next"))).messages() == [b"next"]


def test_finished_call_refuses_to_send(peer: Peer) -> None:
    peer.call(SERVICE + "Hang", message(b""))
    (call,) = peer.protocol._calls.values()
    lose(peer)
    with pytest.raises(CancelledError):
        call.send(b"late")
    with pytest.raises(CancelledError):
        call.receive()


def test_unary_response_calls_cannot_send(peer: Peer) -> None:
    peer.call(SERVICE + "Late", message(b""))
    (call,) = peer.protocol._calls.values()
    with pytest.raises(RuntimeError, match="return value"):
        call.send(b"no")


def test_client_goaway_cancels_calls_and_closes(peer: Peer, service: TestService) -> None:
    peer.call(SERVICE + "Hang", message(b""))
    peer.h2.close_connection()
    peer.flush()
    assert service.cancelled == 1 and peer.closed


# Flow control


def test_response_waits_for_the_stream_window(factory: GRPCServerFactory, service: TestService) -> None:
    peer = Peer(factory, settings={SettingCodes.INITIAL_WINDOW_SIZE: 1000}, auto_window=False)
    stream = peer.call(SERVICE + "Count", message(b"2000:100"))
    response = peer.response(stream)
    assert len(response.data) == 1000 and response.status is None
    assert service.sent == (64 * 1024 + 1000) // 105  # the window, then the send buffer
    assert service.max_buffered <= 64 * 1024 + 105
    while response.status is None:
        peer.h2.acknowledge_received_data(1000, stream)
        peer.h2.increment_flow_control_window(1000, stream)
        peer.flush()
        response = peer.response(stream)
    assert response.messages() == [b"x" * 100] * 2000 and service.sent == 2000


def test_messages_queued_in_one_turn_share_data_frames(peer: Peer) -> None:
    small = peer.call(SERVICE + "Count", message(b"10:100"))
    large = peer.call(SERVICE + "Count", message(b"100:1000"))
    data = [event for event in peer.events if isinstance(event, DataReceived)]
    frames = {
        stream: [event.flow_controlled_length for event in data if event.stream_id == stream]
        for stream in (small, large)
    }
    assert frames[small] == [10 * 105]
    assert len(frames[large]) < 10 and max(frames[large]) <= 16384  # whole messages up to the frame size
    assert peer.response(small).messages() == [b"x" * 100] * 10
    assert peer.response(large).messages() == [b"x" * 1000] * 100


def test_connection_window_is_shared_between_streams(factory: GRPCServerFactory) -> None:
    peer = Peer(factory, settings={SettingCodes.INITIAL_WINDOW_SIZE: 1 * MiB}, auto_window=False)
    first = peer.call(SERVICE + "Count", message(b"1:50000"))
    second = peer.call(SERVICE + "Count", message(b"1:50000"))
    sent = len(peer.response(first).data) + len(peer.response(second).data)
    assert sent == 65535  # the client's connection window, which it has not reopened
    peer.h2.increment_flow_control_window(2 * 50005 - 65535)
    peer.flush()
    assert peer.response(first).messages() == [b"x" * 50000]
    assert peer.response(second).messages() == [b"x" * 50000]


def test_received_data_is_acknowledged(peer: Peer) -> None:
    stream = peer.call(SERVICE + "Collect", end=False)
    chunk = message(b"z" * 60000)
    sent = 0
    while sent < 40 * MiB:
        assert peer.h2.local_flow_control_window(stream) >= len(chunk), "the server stopped opening windows"
        peer.h2.send_data(stream, chunk[:16384])
        peer.h2.send_data(stream, chunk[16384:32768])
        peer.h2.send_data(stream, chunk[32768:49152])
        peer.h2.send_data(stream, chunk[49152:])
        peer.flush()
        peer.pump()
        sent += len(chunk)
    peer.h2.end_stream(stream)
    peer.flush()
    assert peer.response(stream).messages() == [b"%d:%d" % (sent // len(chunk), sent // len(chunk) * 60000)]


def test_unread_requests_close_the_stream_window_only(factory: GRPCServerFactory, peer: Peer) -> None:
    idle = peer.call(SERVICE + "Idle", end=False)
    sent = 0
    while peer.h2.local_flow_control_window(idle) >= 16384 and sent < 10 * MiB:
        peer.h2.send_data(idle, message(b"i" * 16379))
        peer.flush()
        peer.pump()
        sent += 16384
    assert 1 * MiB <= sent <= 3 * MiB  # about the window, plus what was read before it closed
    assert peer.response(peer.call(SERVICE + "Echo", message(b"other"))).messages() == [b"other"]


def test_paused_transport_holds_output(factory: GRPCServerFactory, peer: Peer, service: TestService) -> None:
    peer.protocol.pauseProducing()
    stream = peer.call(SERVICE + "Count", message(b"100:1000"))
    assert not peer.response(stream).data
    assert service.sent < 100 and peer.protocol.buffered() <= 64 * 1024 + 1005
    peer.protocol.resumeProducing()
    response = peer.response(stream)
    assert response.status == 0 and len(response.messages()) == 100


def test_pings_are_answered(peer: Peer) -> None:
    """Within the budget (floods are test_abuse's): 100 at once, and any number beside response data."""
    for i in range(100):
        peer.h2.ping(b"%08d" % i)
    peer.flush()
    events = peer.pump()
    assert len([e for e in events if isinstance(e, PingAckReceived)]) == 100
    for i in range(300):
        peer.call(SERVICE + "Echo", message(b"data"))
        peer.h2.ping(b"%08d" % i)
        peer.flush()
    events = peer.pump()
    assert not any(isinstance(e, ConnectionTerminated) for e in peer.events)
    assert not peer.closed


def test_thousand_concurrent_streams(factory: GRPCServerFactory, peer: Peer, service: TestService) -> None:
    streams = [peer.call(SERVICE + "Hang", message(b"%d" % i)) for i in range(1000)]
    assert factory.open_calls == 1000
    for waiting in list(service.hanging):
        waiting.callback(None)
    assert [peer.response(s).messages() for s in streams] == [[b"%d" % i] for i in range(1000)]
    assert factory.open_calls == 0


def test_stream_table_stays_small_beside_long_lived_streams(factory: GRPCServerFactory, peer: Peer) -> None:
    for _ in range(100):
        peer.call(SERVICE + "Hang", message(b""))
    for i in range(1000):
        assert peer.response(peer.call(SERVICE + "Echo", message(b"%d" % i))).messages() == [b"%d" % i]
    assert factory.open_calls == 100
    assert len(peer.protocol._h2.streams) <= 2 * 100 + 64


def test_concurrent_stream_limit_counts_only_open_streams(clock: Clock) -> None:
    factory, service = make_factory(clock, max_concurrent_streams=10)
    peer = Peer(factory)
    for _ in range(3):
        for _ in range(10):
            peer.call(SERVICE + "Hang", message(b""))
        assert factory.open_calls == 10 and not peer.closed
        for waiting in list(service.hanging):
            waiting.callback(None)
        peer.pump()
    peer.call(SERVICE + "Hang", message(b""))
    assert factory.open_calls == 1


# Bad input


@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x00" * 100,
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\xff" * 50,
])
def test_garbage_closes_only_that_connection(clock: Clock, factory: GRPCServerFactory, garbage: bytes) -> None:
    bad = Peer(factory, preface=False)
    good = Peer(factory)
    bad.send_raw(garbage)
    clock.advance(GOAWAY_LINGER)  # after a GOAWAY the server reads on for a second (test_abuse)
    assert bad.closed
    assert good.response(good.call(SERVICE + "Echo", message(b"ok"))).messages() == [b"ok"]


def send_block(peer: Peer, headers: list[tuple[bytes, bytes]]) -> int:
    """Send ``headers`` as one header block, HEADERS and CONTINUATION frames, unchecked."""
    stream = peer.h2.get_next_available_stream_id()
    block = peer.h2.encoder.encode(headers)
    pieces = [block[i:i + 16384] for i in range(0, len(block), 16384)]
    frames = [HeadersFrame(stream, data=pieces[0], flags=["END_STREAM"])]
    frames += [ContinuationFrame(stream, data=piece) for piece in pieces[1:]]
    frames[-1].flags.add("END_HEADERS")
    peer.send_raw(b"".join(frame.serialize() for frame in frames))
    peer.h2.highest_outbound_stream_id = stream  # the client's own next stream comes after it
    return stream


def test_a_header_list_over_the_limit_closes_the_connection(clock: Clock, factory: GRPCServerFactory) -> None:
    bad = Peer(factory)
    good = Peer(factory)
    send_block(bad, request_headers(SERVICE + "Echo", (b"x-big", b"b" * 70000)))  # over MAX_HEADER_LIST_SIZE
    clock.advance(GOAWAY_LINGER)
    assert bad.closed and not bad.protocol._calls
    goaway = bad.raw_frames()[-1]
    assert isinstance(goaway, GoAwayFrame) and goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert good.response(good.call(SERVICE + "Echo", message(b"ok"))).messages() == [b"ok"]


ECHO = SERVICE + "Echo"


@pytest.mark.parametrize("headers", [
    request_headers(ECHO, (b"connection", b"close")),  # connection-specific (RFC 9113 8.2.2)
    request_headers(ECHO, (b"keep-alive", b"300")),
    request_headers(ECHO, (b"transfer-encoding", b"chunked")),
    request_headers(ECHO, (b"upgrade", b"h2c")),
    request_headers(ECHO, (b"te", b"gzip")),  # te other than trailers
    request_headers(ECHO, (b"X-Upper", b"v")),  # not lower case
    request_headers(ECHO, (b"bad name", b"v")),  # not a token
    request_headers(ECHO, (b"", b"v")),  # empty name
    request_headers(ECHO, (b"x-nul", b"a\x00b")),  # NUL, CR or LF in a value
    request_headers(ECHO, (b"x-cr", b"a\rb")),
    request_headers(ECHO, (b"x-lf", b"a\nb")),
    request_headers(ECHO, (b"x-space", b" leading")),  # surrounding whitespace
    request_headers(ECHO, (b"x-tab", b"trailing\t")),
    [*request_headers(ECHO), (b":status", b"200")],  # a response's pseudo-header, after regular ones
    request_headers(ECHO, (b":path", b"/again")),  # a pseudo-header after regular ones
    [(b":path", ECHO.encode()), *request_headers(ECHO)],  # repeated
    [(b":protocol", b"websocket"), *request_headers(ECHO)],  # unknown
    [header for header in request_headers(ECHO) if header[0] != b":method"],  # missing
    [header for header in request_headers(ECHO) if header[0] != b":scheme"],
    [(b":path", b"") if name == b":path" else (name, value) for name, value in request_headers(ECHO)],  # empty
])
def test_a_malformed_request_resets_its_stream_and_the_connection_serves_on(
    factory: GRPCServerFactory, headers: list
) -> None:
    peer = Peer(factory)
    stream = send_block(peer, headers)
    resets = [frame for frame in peer.raw_frames() if isinstance(frame, RstStreamFrame) and frame.stream_id == stream]
    assert [frame.error_code for frame in resets] == [ErrorCodes.PROTOCOL_ERROR]
    assert not peer.closed and not peer.protocol._calls
    assert peer.response(peer.call(ECHO, message(b"ok"))).messages() == [b"ok"]


def test_oversized_frame_is_a_frame_size_error(clock: Clock, peer: Peer) -> None:
    stream = peer.call(SERVICE + "Collect", end=False)
    frame = DataFrame(stream, data=b"d" * 20000)
    peer.send_raw(frame.serialize())
    clock.advance(GOAWAY_LINGER)
    events = peer.pump()
    assert [e.error_code for e in events if isinstance(e, ConnectionTerminated)] == [ErrorCodes.FRAME_SIZE_ERROR]
    assert peer.closed and not peer.protocol._calls


def test_truncated_frame_then_disconnect(factory: GRPCServerFactory, peer: Peer, service: TestService) -> None:
    peer.call(SERVICE + "Hang", message(b""))
    peer.h2.send_data(peer.call(SERVICE + "Collect", end=False), message(b"a" * 1000))
    peer.send_raw(peer.h2.data_to_send()[:500])
    lose(peer)
    assert service.cancelled == 1 and factory.open_calls == 0 and not factory.connections


# Keepalive


def keepalive_pings(peer: Peer) -> list[PingFrame]:
    """The keepalive PINGs the server wrote since the last look, left unanswered."""
    frames = peer.raw_frames()
    assert all(isinstance(frame, PingFrame) and frame.opaque_data == KEEPALIVE_PING for frame in frames), frames
    return frames


def test_a_quiet_client_is_pinged_and_kept_while_it_answers(clock: Clock) -> None:
    factory, _ = make_factory(clock, keepalive_interval=60, keepalive_timeout=5)
    peer = Peer(factory)
    clock.advance(59)
    assert keepalive_pings(peer) == []
    clock.advance(1)
    (ping,) = keepalive_pings(peer)
    clock.advance(4)
    peer.send_raw(PingFrame(0, opaque_data=ping.opaque_data, flags=["ACK"]).serialize())
    clock.advance(1)
    assert not peer.closed and keepalive_pings(peer) == []
    # The next ping comes a whole interval after the answer.
    clock.advance(58)
    assert keepalive_pings(peer) == []
    clock.advance(1)
    assert len(keepalive_pings(peer)) == 1


def test_a_client_that_does_not_answer_is_disconnected(clock: Clock, service: TestService) -> None:
    factory, service = make_factory(clock, keepalive_interval=60, keepalive_timeout=5)
    peer = Peer(factory)
    peer.call(SERVICE + "Hang", message(b""))
    clock.advance(60)
    assert len(keepalive_pings(peer)) == 1
    clock.advance(4.9)
    assert not peer.closed
    clock.advance(0.1)
    assert peer.transport.disconnecting
    lose(peer)
    assert service.cancelled == 1 and not factory.connections and not clock.getDelayedCalls()


def test_anything_heard_from_the_client_keeps_the_connection(clock: Clock) -> None:
    factory, service = make_factory(clock, keepalive_interval=60, keepalive_timeout=5)
    peer = Peer(factory)
    for _ in range(10):
        clock.advance(30)
        stream = peer.call(SERVICE + "Echo", message(b"busy"))
        assert peer.response(stream).status == 0
    assert keepalive_pings(peer) == [] and not peer.closed
    clock.advance(60)
    assert len(keepalive_pings(peer)) == 1
    peer.h2.ping(b"12345678")  # any frame counts as an answer
    peer.flush()
    clock.advance(5)
    assert not peer.closed


def test_keepalive_can_be_turned_off(clock: Clock) -> None:
    factory, _ = make_factory(clock, keepalive_interval=0)
    peer = Peer(factory)
    assert not clock.getDelayedCalls()
    clock.advance(10 * 24 * 3600)
    assert peer.raw_frames() == [] and not peer.closed


# Graceful shutdown


def test_shutdown_lets_calls_in_flight_finish(clock: Clock, factory: GRPCServerFactory, peer: Peer,
                                              service: TestService) -> None:
    stream = peer.call(SERVICE + "Hang", message(b"in flight"))
    closed = factory.shutdown(30)
    goaway, ping = peer.raw_frames()
    assert (goaway.error_code, goaway.last_stream_id) == (ErrorCodes.NO_ERROR, 2**31 - 1)
    assert ping.opaque_data == DRAIN_PING
    # A call the client started before it saw the GOAWAY is still served.
    racing = peer.call(SERVICE + "Echo", message(b"racing"))
    assert peer.responses[racing].messages() == [b"racing"] and peer.responses[racing].status == 0
    peer.send_raw(PingFrame(0, opaque_data=ping.opaque_data, flags=["ACK"]).serialize())
    (final,) = peer.raw_frames()
    assert (final.error_code, final.last_stream_id) == (ErrorCodes.NO_ERROR, racing)
    late = peer.call(SERVICE + "Echo", message(b"late"))
    assert peer.responses[late].reset == ErrorCodes.REFUSED_STREAM and peer.responses[late].headers is None
    assert not closed.called and not peer.closed
    service.hanging[0].callback(None)
    headers, data, trailers = peer.raw_frames()
    assert data.data == message(b"in flight") and trailers.headers[b"grpc-status"] == b"0"
    assert "END_STREAM" in trailers.flags and trailers.stream_id == stream
    assert peer.closed
    lose(peer)
    assert closed.called and not clock.getDelayedCalls()


def test_shutdown_grace_ends_calls_unavailable(clock: Clock, factory: GRPCServerFactory, peer: Peer,
                                               service: TestService) -> None:
    stream = peer.call(SERVICE + "HangStream", message(b""))
    assert peer.response(stream).messages() == [b"first"]
    closed = factory.shutdown(2)
    assert [type(f) for f in peer.raw_frames()] == [GoAwayFrame, PingFrame]
    clock.advance(2)
    trailers, goaway = peer.raw_frames()
    assert trailers.stream_id == stream and trailers.headers[b"grpc-status"] == b"14"
    assert goaway.last_stream_id == stream
    assert service.cancelled == 1 and peer.closed and not closed.called
    clock.advance(factory.abort_after)
    assert peer.transport.disconnecting
    lose(peer)
    assert closed.called and not clock.getDelayedCalls()


def test_connections_after_shutdown_are_closed(clock: Clock, factory: GRPCServerFactory) -> None:
    closed = factory.shutdown(1)
    assert closed.called
    peer = Peer(factory)
    assert [e.last_stream_id for e in peer.events if isinstance(e, ConnectionTerminated)] == [0]
    assert peer.closed


# Resources


def test_dropped_connections_and_streams_leave_nothing_behind(clock: Clock) -> None:
    # 3,000 streams reset on one connection would be a rapid reset (test_abuse): allowed here.
    factory, service = make_factory(clock, abuse_limits=AbuseLimits(resets=10**6))
    before = live_objects()
    peers = []
    for i in range(2000):
        peer = Peer(factory)
        peer.call(SERVICE + "Hang", message(b""), headers=[(b"grpc-timeout", b"1H")])
        if i % 2:
            peer.h2.send_data(peer.call(SERVICE + "Collect", end=False), message(b"p" * 100)[:50])
            peer.flush()
            peers.append(peer)
        lose(peer)
    one = Peer(factory)
    for _ in range(3000):
        stream = one.call(SERVICE + "Chat", message(b"x"), end=False)
        one.h2.reset_stream(stream)
        one.flush()
    lose(one)
    del peer, peers, one
    assert service.cancelled == 2000
    assert factory.open_calls == 0 and not factory.connections and not clock.getDelayedCalls()
    assert live_objects() == before


def test_call_observer_sees_method_code_and_duration(clock: Clock) -> None:
    seen = []
    factory = GRPCServerFactory(TestService().registry(), clock, call_observer=lambda *a: seen.append(a))
    peer = Peer(factory)
    peer.call(SERVICE + "Echo", message(b""))
    stream = peer.call(SERVICE + "Late", message(b""))
    clock.advance(1.5)
    peer.h2.reset_stream(stream)
    peer.flush()
    peer.call("/x.Y/Z", message(b""))
    assert seen == [
        ("/test.Test/Echo", StatusCode.OK, 0.0),
        ("/test.Test/Late", StatusCode.CANCELLED, 1.5),
        ("", StatusCode.UNIMPLEMENTED, 0.0),
    ]
