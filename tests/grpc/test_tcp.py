"""GRPCProtocol on real TCP sockets: what it sets on the connection."""

from __future__ import annotations

import socket
import time
from typing import Any, Callable

import pytest
from twisted.internet.task import deferLater

from k8s_sql.grpc.protocol import GRPCProtocol
from k8s_sql.grpc.tls import server_endpoint

from tests.grpc.service import make_factory
from tests.grpc.support import Certificates


def _connected(run: Callable[..., Any], reactor: Any, factory: Any) -> GRPCProtocol:
    """Wait for the server side of a connection to the factory."""
    deadline = time.monotonic() + 10
    while not factory.connections:
        assert time.monotonic() < deadline, "the server never saw the connection"
        run(deferLater, reactor, 0.01, lambda: None)
    (protocol,) = factory.connections
    return protocol


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_nagle_is_off_on_server_connections(run: Callable[..., Any], reactor: Any, certificates: Certificates,
                                            tls: bool) -> None:
    """Responses leave at once: Nagle's algorithm would hold each back until the client
    acknowledged the one before, when several calls are in flight."""
    factory, _ = make_factory(reactor)
    files = dict(cert_file=certificates.path("server.pem"), key_file=certificates.path("server.key")) if tls else {}
    endpoint = server_endpoint(reactor, "tcp:0:interface=127.0.0.1", **files)
    port = run(endpoint.listen, factory)
    try:
        with socket.create_connection(("127.0.0.1", port.getHost().port)):
            protocol = _connected(run, reactor, factory)
            # Under TLS, the protocol's transport is the TLS layer over the TCP one.
            tcp = protocol.transport.transport if tls else protocol.transport
            handle = run(tcp.getHandle)
            assert handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        run(port.stopListening)
