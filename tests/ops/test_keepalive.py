"""Server keepalive end to end: a client not heard from is PINGed, and dropped if it stays
silent; clients that answer (every HTTP/2 client does) keep their connections.

The intervals themselves are tested on a ``task.Clock`` (tests/grpc/test_protocol.py); here
each test waits for the events on a real connection: the PINGs, the answers, the close.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ConnectionTerminated, DataReceived, Event, PingReceived, StreamEnded

from k8s_sql.proto import rpc_pb2
from tests.processes import K8sSQL

KEEPALIVE = ("--grpc-keepalive-interval", "1s", "--grpc-keepalive-timeout", "1s")
DROPPED = "no answer to a keepalive ping"


def events(sock: socket.socket, client: H2Connection, answer: bool) -> Iterator[Event]:
    """What the server sends, as h2 events, until it closes; PINGs are acknowledged only if ``answer``."""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return
        if not data:
            return
        yield from client.receive_data(data)
        if answer:
            sock.sendall(client.data_to_send())


def test_a_silent_client_is_pinged_then_disconnected(tmp_path: Path) -> None:
    with K8sSQL(f"sqlite:///{tmp_path}/db", *KEEPALIVE) as server:
        host, port = server.endpoint.split(":")
        client = H2Connection(H2Configuration(client_side=True))
        client.initiate_connection()
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(client.data_to_send())
            seen = [type(event) for event in events(sock, client, answer=False)]
        server.wait_for_output(DROPPED, timeout=10)
    # The connection ended (the loop above returned) after an unanswered PING, and not by a GOAWAY.
    assert PingReceived in seen and ConnectionTerminated not in seen


def test_a_client_that_answers_pings_keeps_its_connection(tmp_path: Path) -> None:
    with K8sSQL(f"sqlite:///{tmp_path}/db", *KEEPALIVE) as server:
        host, port = server.endpoint.split(":")
        client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        client.initiate_connection()
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(client.data_to_send())
            pings = 0
            stream = events(sock, client, answer=True)
            for event in stream:  # several keepalive rounds on a quiet connection, each answered
                pings += isinstance(event, PingReceived)
                if pings == 3:
                    break
            request = rpc_pb2.RangeRequest(key=b"k").SerializeToString()
            client.send_headers(1, [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/etcdserverpb.KV/Range"),
                                    (b":authority", b"localhost"), (b"te", b"trailers"),
                                    (b"content-type", b"application/grpc")])
            client.send_data(1, struct.pack(">BI", 0, len(request)) + request, end_stream=True)
            sock.sendall(client.data_to_send())
            body = b""
            for event in stream:
                if isinstance(event, DataReceived):
                    body += event.data
                if isinstance(event, StreamEnded):
                    break
        assert rpc_pb2.RangeResponse.FromString(body[5:]).header.revision == 1
        assert DROPPED not in server.text()
