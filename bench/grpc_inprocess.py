"""The server's own cost per unary call, without sockets or a client: h2 frames in, frames out.

    python bench/grpc_inprocess.py [--calls 4000] [--repeat 5] [--open 0 300]

A client-side h2 connection prepares the bytes of ``--calls`` unary echo calls (each with
the headers grpcio sends); they are fed to one GRPCProtocol over a StringTransport, one
call per read.  Prints the best CPU time per call over ``--repeat`` runs and the number
of Python function calls per call (from cProfile, which does not depend on machine
load), with ``--open`` other streams held open on the connection (as watches are).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import struct
import time

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.settings import SettingCodes
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from k8s_sql.grpc.protocol import GRPCProtocol, GRPCServerFactory
from k8s_sql.grpc.registry import CallKind, MethodRegistry

ECHO = "/bench.Bench/Echo"
HEADERS = [
    (b":method", b"POST"), (b":scheme", b"http"), (b":path", ECHO.encode()), (b":authority", b"127.0.0.1:2379"),
    (b"te", b"trailers"), (b"content-type", b"application/grpc"), (b"user-agent", b"grpc-python/1.66"),
    (b"grpc-accept-encoding", b"identity,deflate,gzip"),
]


def identity(data: bytes) -> bytes:
    return data


async def echo(request: bytes, call: object) -> bytes:
    return request


def connect() -> tuple[GRPCProtocol, StringTransport]:
    registry = MethodRegistry()
    registry.add(ECHO, CallKind.UNARY, echo, identity, identity)
    protocol = GRPCServerFactory(registry, Clock()).buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def client_bytes(server_preface: bytes, calls: int, open_streams: int) -> list[bytes]:
    """What a client sends: its preface, ``open_streams`` unfinished calls, then ``calls`` calls."""
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    client.receive_data(server_preface)
    client.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
    client.increment_flow_control_window(2**31 - 1 - 65535)
    body = struct.pack(">BI", 0, 100) + b"x" * 100
    for _ in range(open_streams):
        client.send_headers(client.get_next_available_stream_id(), HEADERS)
    chunks = [client.data_to_send()]
    for _ in range(calls):
        stream_id = client.get_next_available_stream_id()
        client.send_headers(stream_id, HEADERS)
        client.send_data(stream_id, body, end_stream=True)
        chunks.append(client.data_to_send())
        del client.streams[stream_id]  # this client never reads the answers
    return chunks


def run(calls: int, open_streams: int, profile: cProfile.Profile | None = None) -> float:
    """CPU seconds the server spends on ``calls`` calls."""
    protocol, transport = connect()
    chunks = client_bytes(transport.value(), calls, open_streams)
    transport.clear()
    protocol.dataReceived(chunks[0])
    transport.clear()
    if profile is not None:
        profile.enable()
    began = time.process_time()
    for chunk in chunks[1:]:
        protocol.dataReceived(chunk)
        transport.clear()
    elapsed = time.process_time() - began
    if profile is not None:
        profile.disable()
    assert protocol.open_calls == open_streams
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--open", type=int, nargs="+", default=[0, 300])
    options = parser.parse_args()
    for open_streams in options.open:
        best = min(run(options.calls, open_streams) for _ in range(options.repeat))
        profile = cProfile.Profile()
        run(options.calls, open_streams, profile)
        functions = pstats.Stats(profile).total_calls / options.calls
        print(f"{open_streams:4d} other streams open: {best / options.calls * 1e6:6.0f} us CPU/call, "
              f"{functions:5.0f} Python function calls/call", flush=True)


if __name__ == "__main__":
    main()
