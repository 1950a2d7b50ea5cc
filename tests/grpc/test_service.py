"""GRPCServer: listen on every endpoint on start; on stop, stop listening and shut down gracefully."""

from __future__ import annotations

from hyperframe.frame import PingFrame
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from zope.interface import implementer

from k8s_sql.grpc.service import GRPCServer

from tests.grpc.h2peer import Peer, message
from tests.grpc.service import SERVICE, make_factory
from tests.grpc.test_protocol import lose


@implementer(IListeningPort)
class FakePort:
    listening = True

    def startListening(self) -> None:
        self.listening = True

    def stopListening(self) -> Deferred[None]:
        self.listening = False
        return succeed(None)

    def getHost(self) -> None:
        return None


@implementer(IStreamServerEndpoint)
class FakeEndpoint:
    def __init__(self) -> None:
        self.port = FakePort()
        self.factory: Factory | None = None

    def listen(self, factory: Factory) -> Deferred[IListeningPort]:
        self.factory = factory
        return succeed(self.port)


def test_start_listens_and_stop_waits_for_calls_in_flight() -> None:
    clock = Clock()
    factory, service = make_factory(clock)
    endpoint, other = FakeEndpoint(), FakeEndpoint()
    grpc_service = GRPCServer(factory, [("one", endpoint), ("other", other)], grace=10)
    grpc_service.startService()
    ready: list[None] = []
    grpc_service.whenStarted().addCallback(ready.append)
    assert ready == [None] and grpc_service.ports == [endpoint.port, other.port]
    assert endpoint.factory is other.factory is factory and endpoint.port.listening and other.port.listening
    assert grpc_service.getServiceNamed("other").port is other.port
    peer = Peer(factory)
    peer.call(SERVICE + "Hang", message(b"last"))
    stopped: list[None] = []
    grpc_service.stopService().addCallback(stopped.append)
    assert not endpoint.port.listening and not other.port.listening and not stopped
    goaway, ping = peer.raw_frames()
    peer.send_raw(PingFrame(0, opaque_data=ping.opaque_data, flags=["ACK"]).serialize())
    assert not peer.closed  # a call is still in flight
    service.hanging[0].callback(None)
    assert peer.raw_frames()[-1].headers[b"grpc-status"] == b"0"
    assert peer.closed
    lose(peer)
    assert stopped == [None] and not clock.getDelayedCalls()


def test_stop_without_connections_is_immediate() -> None:
    factory, _ = make_factory(Clock())
    grpc_service = GRPCServer(factory, [("only", FakeEndpoint())])
    grpc_service.startService()
    stopped: list[None] = []
    grpc_service.stopService().addCallback(stopped.append)
    assert stopped == [None]
