"""Connections accepted in one place and handed over a datagram socket, as to a worker."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor
from zope.interface.verify import verifyObject
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint

from k8s_sql.workers.handoff import Acceptor, HandedEndpoint, Receiver, send


class Adopting(MemoryReactor):
    """A memory reactor that records the connections adopted, with the descriptor's peer."""

    def __init__(self) -> None:
        super().__init__()
        self.adopted: list[tuple[int, Any, tuple[str, int]]] = []

    def adoptStreamConnection(self, fileDescriptor: int, addressFamily: int, factory: Any) -> None:
        probe = socket.socket(fileno=socket.dup(fileDescriptor))
        try:
            self.adopted.append((addressFamily, factory, probe.getpeername()))
        finally:
            probe.close()


@pytest.fixture
def listening() -> Any:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    yield server
    server.close()


def test_accepted_connections_go_to_dispatch_until_none_waits(listening: socket.socket) -> None:
    handed: list[tuple[socket.socket, int]] = []
    acceptor = Acceptor(MemoryReactor(), listening, 3, lambda connection, index: handed.append((connection, index)))
    clients = [socket.create_connection(listening.getsockname()) for _ in range(3)]
    try:
        acceptor.doRead()
        assert [index for _, index in handed] == [3, 3, 3]
        assert sorted(connection.getpeername() for connection, _ in handed) == sorted(
            client.getsockname() for client in clients
        )
        acceptor.doRead()  # nothing waiting: returns at once
    finally:
        for client in clients:
            client.close()
        for connection, _ in handed:
            connection.close()


def test_a_connection_crosses_to_the_factory_of_its_endpoint(listening: socket.socket) -> None:
    supervisor_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    worker_end.setblocking(False)
    reactor = Adopting()
    receiver = Receiver(reactor, worker_end)
    first, second = Factory.forProtocol(Protocol), Factory.forProtocol(Protocol)
    host = IPv4Address("TCP", "127.0.0.1", listening.getsockname()[1])
    endpoints = [HandedEndpoint(receiver, index, socket.AF_INET, host) for index in (0, 1)]
    verifyObject(IStreamServerEndpoint, endpoints[0])
    ports = [endpoint.listen(factory).result for endpoint, factory in zip(endpoints, (first, second), strict=True)]
    verifyObject(IListeningPort, ports[0])
    assert ports[0].getHost() == host and receiver in reactor.getReaders()
    client = socket.create_connection(listening.getsockname())
    try:
        connection, _ = listening.accept()
        assert send(supervisor_end, connection, 1)
        assert connection.fileno() == -1  # the supervisor's copy is closed once sent
        receiver.doRead()
        ((family, factory, peer),) = reactor.adopted
        assert family == socket.AF_INET and factory is second and peer == client.getsockname()
        ports[1].stopListening()
        ports[0].stopListening()
        assert receiver not in reactor.getReaders()
    finally:
        client.close()
        supervisor_end.close()
        worker_end.close()


def test_a_connection_for_an_endpoint_that_stopped_is_closed(listening: socket.socket) -> None:
    supervisor_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    worker_end.setblocking(False)
    reactor = Adopting()
    receiver = Receiver(reactor, worker_end)
    client = socket.create_connection(listening.getsockname())
    try:
        connection, _ = listening.accept()
        assert send(supervisor_end, connection, 5)
        receiver.doRead()
        assert reactor.adopted == []
        client.settimeout(5)
        assert client.recv(1) == b""  # the worker's copy was closed: the client sees the end
    finally:
        client.close()
        supervisor_end.close()
        worker_end.close()


def test_send_reports_a_worker_gone() -> None:
    supervisor_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    worker_end.close()
    ours, theirs = socket.socketpair()
    try:
        assert not send(supervisor_end, ours, 0)
    finally:
        theirs.close()
        supervisor_end.close()
