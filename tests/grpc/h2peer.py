"""A scripted HTTP/2 client (h2's client side) wired to a GRPCProtocol over a StringTransport."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    DataReceived,
    Event,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from h2.settings import SettingCodes
from hyperframe.frame import Frame, HeadersFrame
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from k8s_sql.grpc.protocol import GRPCProtocol, GRPCServerFactory

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def message(payload: bytes, flag: int = 0) -> bytes:
    """A length-prefixed gRPC message."""
    return struct.pack(">BI", flag, len(payload)) + payload


def request_headers(path: str, *extra: tuple[bytes, bytes], content_type: bytes = b"application/grpc",
                    method: bytes = b"POST") -> list[tuple[bytes, bytes]]:
    """The headers grpc clients send, plus ``extra``."""
    return [
        (b":method", method),
        (b":scheme", b"http"),
        (b":path", path.encode()),
        (b":authority", b"localhost"),
        (b"te", b"trailers"),
        (b"content-type", content_type),
        *extra,
    ]


@dataclass
class Response:
    """What the server sent on one stream."""

    headers: dict[bytes, bytes] | None = None
    data: bytearray = field(default_factory=bytearray)
    trailers: dict[bytes, bytes] | None = None
    ended: bool = False
    reset: int | None = None

    @property
    def status(self) -> int | None:
        """grpc-status, from the trailers or a Trailers-Only response."""
        source = self.trailers if self.trailers is not None else self.headers
        if source is None or b"grpc-status" not in source:
            return None
        return int(source[b"grpc-status"])

    @property
    def message(self) -> bytes | None:
        """grpc-message as sent (percent-encoded)."""
        source = self.trailers if self.trailers is not None else self.headers
        return None if source is None else source.get(b"grpc-message")

    def messages(self) -> list[bytes]:
        """The length-prefixed messages in the data received."""
        found, offset = [], 0
        while offset < len(self.data):
            flag, length = struct.unpack_from(">BI", self.data, offset)
            assert flag == 0
            found.append(bytes(self.data[offset + 5:offset + 5 + length]))
            offset += 5 + length
        assert offset == len(self.data)
        return found


class Peer:
    """One client connection to a GRPCProtocol, driven step by step by a test.

    Data the client sends goes to the protocol only on :meth:`flush`; what the server
    wrote is read by :meth:`pump`.  ``auto_window`` makes the client acknowledge
    received data at once, as real clients do; turn it off to exhaust windows.
    """

    def __init__(self, factory: GRPCServerFactory, *, settings: dict[int, int] | None = None,
                 auto_window: bool = True, preface: bool = True) -> None:
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.protocol: GRPCProtocol = factory.buildProtocol(self.transport.getPeer())
        self.protocol.makeConnection(self.transport)
        self.reactor = factory.reactor
        self.h2 = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.auto_window = auto_window
        self.events: list[Event] = []
        self.responses: dict[int, Response] = {}
        if preface:
            self.h2.initiate_connection()
            if settings:
                self.h2.update_settings(settings)
            self.flush()
            self.pump()

    @property
    def closed(self) -> bool:
        """Whether the server closed (or aborted) the connection."""
        return self.transport.disconnecting or self.transport.disconnected

    def flush(self, one_byte_at_a_time: bool = False) -> None:
        """Deliver what the client has to send."""
        self.send_raw(self.h2.data_to_send(), one_byte_at_a_time)

    def send_raw(self, data: bytes, one_byte_at_a_time: bool = False) -> None:
        """Deliver ``data`` to the server as is."""
        if one_byte_at_a_time:
            for i in range(len(data)):
                self.protocol.dataReceived(data[i:i + 1])
        elif data:
            self.protocol.dataReceived(data)

    def pump(self) -> list[Event]:
        """Read what the server wrote and answer h2-level duties (ACKs, window updates),
        until the server has nothing more to say."""
        events: list[Event] = []
        self.end_turn()
        while data := self.transport.value():
            self.transport.clear()
            received = self.h2.receive_data(data)
            for event in received:
                self._record(event)
            events.extend(received)
            self.flush()
            self.end_turn()
        self.events.extend(events)
        return events

    def end_turn(self) -> None:
        """End the reactor's turn: calls send the messages they queued in it."""
        if isinstance(self.reactor, Clock):
            self.reactor.advance(0)

    def raw_frames(self) -> list[Frame]:
        """Read what the server wrote as frames, bypassing the client state machine.

        h2's client refuses every frame after a GOAWAY, but a draining server still
        sends on the streams it accepted.  Header blocks are decoded (as ``headers``)
        with the client's HPACK decoder, so the two stay in step.
        """
        self.end_turn()
        data = memoryview(self.transport.value())
        self.transport.clear()
        frames = []
        while data:
            frame, length = Frame.parse_frame_header(data[:9])
            frame.parse_body(data[9:9 + length])
            if isinstance(frame, HeadersFrame):
                frame.headers = dict(self.h2.decoder.decode(frame.data, raw=True))  # type: ignore[attr-defined]
            frames.append(frame)
            data = data[9 + length:]
        return frames

    def call(self, path: str, *messages: bytes, end: bool = True,
             headers: Iterable[tuple[bytes, bytes]] = (), one_byte_at_a_time: bool = False) -> int:
        """Start a call, send ``messages`` (already framed or not) and maybe half-close."""
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream_id, request_headers(path, *headers), end_stream=end and not messages)
        body = b"".join(messages)
        if body:
            self.send_data(stream_id, body, end=end)
        self.flush(one_byte_at_a_time)
        self.pump()
        return stream_id

    def send_data(self, stream_id: int, body: bytes, end: bool = False) -> None:
        """Send ``body`` on ``stream_id`` in frames, waiting for window (from the server) as needed."""
        offset = 0
        while True:
            window = self.h2.local_flow_control_window(stream_id)
            if not window and offset < len(body):
                self.flush()
                self.pump()
                window = self.h2.local_flow_control_window(stream_id)
                assert window, "the server does not open the window"
            size = min(window, self.h2.max_outbound_frame_size, len(body) - offset)
            last = offset + size == len(body)
            self.h2.send_data(stream_id, body[offset:offset + size], end_stream=end and last)
            offset += size
            if last:
                return

    def response(self, stream_id: int) -> Response:
        """What the server sent on ``stream_id`` so far."""
        self.pump()
        return self.responses.setdefault(stream_id, Response())

    def settings(self) -> dict[int, int]:
        """The server's SETTINGS as this client has applied them."""
        return {code: self.h2.remote_settings[code] for code in (
            SettingCodes.MAX_CONCURRENT_STREAMS, SettingCodes.INITIAL_WINDOW_SIZE,
            SettingCodes.MAX_HEADER_LIST_SIZE, SettingCodes.MAX_FRAME_SIZE,
        )}

    def _record(self, event: Any) -> None:
        stream_id = getattr(event, "stream_id", None)
        if not stream_id:
            return
        response = self.responses.setdefault(stream_id, Response())
        if isinstance(event, ResponseReceived):
            response.headers = dict(event.headers)
        elif isinstance(event, TrailersReceived):
            response.trailers = dict(event.headers)
        elif isinstance(event, DataReceived):
            response.data += event.data
            if self.auto_window and event.flow_controlled_length:
                self.h2.acknowledge_received_data(event.flow_controlled_length, stream_id)
        elif isinstance(event, StreamEnded):
            response.ended = True
        elif isinstance(event, StreamReset):
            response.reset = event.error_code
