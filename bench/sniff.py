"""What telling gRPC from HTTP/1.1 on one port costs a gRPC connection.

    python bench/sniff.py [--reads 200000] [--connections 2000]

Compares a GRPCProtocol built directly with one built through the client port's
ProtocolSwitch (over StringTransports, no sockets): the time of one read after the
connection started (a PING frame through h2) and of a connection's set-up including the
client preface.  After its first bytes a switched connection is the gRPC protocol's own:
the per-read times should be equal, the set-up a few microseconds longer.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable

from h2.config import H2Configuration
from h2.connection import H2Connection
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from k8s_sql.gateway.sniff import ProtocolSwitch
from k8s_sql.grpc.protocol import GRPCServerFactory
from k8s_sql.grpc.registry import MethodRegistry

ADDRESS = IPv4Address("TCP", "127.0.0.1", 40000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=200000)
    parser.add_argument("--connections", type=int, default=2000)
    options = parser.parse_args()
    factory = GRPCServerFactory(MethodRegistry(), Clock(), keepalive_interval=0)
    switch = ProtocolSwitch(factory, factory)
    client = H2Connection(H2Configuration(client_side=True))
    client.initiate_connection()
    preface = client.data_to_send()
    client.ping(b"12345678")
    ping = client.data_to_send()

    def connect(build: Callable[[IPv4Address], IProtocol]) -> IProtocol:
        protocol = build(ADDRESS)
        protocol.makeConnection(StringTransport())
        protocol.dataReceived(preface)
        return protocol

    for name, build in (("direct", factory.buildProtocol), ("switched", switch.buildProtocol)):
        protocol = connect(build)
        read = min(timeit.repeat(lambda p=protocol: p.dataReceived(ping), number=options.reads, repeat=5))
        setup = min(timeit.repeat(lambda b=build: connect(b), number=options.connections, repeat=5))
        print(
            f"{name:8}  one read {read / options.reads * 1e6:6.2f} us"
            f"  set-up with preface {setup / options.connections * 1e6:6.1f} us"
        )


if __name__ == "__main__":
    main()
