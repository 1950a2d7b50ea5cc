"""The migration tool's gRPC client against k8s-sql's own gRPC server, in this process, over
loopback TCP (cleartext and TLS with client certificates)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import deferLater

from k8s_sql.grpc.interfaces import IServerCall
from k8s_sql.grpc.protocol import GRPCServerFactory
from k8s_sql.grpc.registry import CallKind, MethodRegistry
from k8s_sql.grpc.status import GRPCError, StatusCode
from k8s_sql.grpc.tls import server_endpoint
from k8s_sql.grpc.client import GRPCChannel, _Call, channel_for
from k8s_sql.grpc.headers import encode_timeout
from k8s_sql.proto.kv_pb2 import KeyValue
from tests.grpc.support import Certificates, make_certificates

Run = Callable[..., Any]
MiB = 1024 * 1024


class Service:
    """Methods taking and answering ``mvccpb.KeyValue`` messages."""

    def __init__(self) -> None:
        self.cancelled = 0
        self.metadata: tuple = ()
        self.deadline: float | None = None

    def registry(self) -> MethodRegistry:
        registry = MethodRegistry()
        for name in ("Echo", "Fail", "Hang", "Big"):
            registry.add(f"/test.KV/{name}", CallKind.UNARY, getattr(self, name.lower()), KeyValue.FromString, KeyValue.SerializeToString)
        return registry

    async def echo(self, request: KeyValue, call: IServerCall) -> KeyValue:
        self.metadata, self.deadline = call.metadata, call.deadline
        return KeyValue(key=request.key, value=request.value[::-1], version=len(request.value))

    async def fail(self, request: KeyValue, call: IServerCall) -> KeyValue:
        raise GRPCError(StatusCode(request.version), request.value.decode())

    async def hang(self, request: KeyValue, call: IServerCall) -> KeyValue:
        try:
            await Deferred()
        except CancelledError:
            self.cancelled += 1
            raise
        return request

    async def big(self, request: KeyValue, call: IServerCall) -> KeyValue:
        return KeyValue(value=b"\x01" * request.version)


class Server:
    """The service listening on 127.0.0.1, in the reactor thread."""

    def __init__(self, run: Run, reactor: Any, endpoint: Any = None, **options: Any) -> None:
        self.run = run
        self.service = Service()
        self.factory = GRPCServerFactory(self.service.registry(), reactor, **options)
        endpoint = endpoint or TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        self.port = run(endpoint.listen, self.factory)
        self.address = f"127.0.0.1:{self.port.getHost().port}"

    def drop(self) -> None:
        """Abort every connection (in the reactor thread)."""
        for connection in list(self.factory.connections):
            connection.transport.abortConnection()

    def drop_connections(self) -> None:
        self.run(self.drop)

    def stop(self) -> None:
        self.run(self.port.stopListening)
        self.drop_connections()


@pytest.fixture
def server(run: Run, reactor: Any) -> Iterator[Server]:
    server = Server(run, reactor, initial_window_size=65535, max_receive_message_length=16 * MiB)
    yield server
    server.stop()


@pytest.fixture
def channel(run: Run, reactor: Any, server: Server) -> Iterator[GRPCChannel]:
    channel = run(channel_for, reactor, f"http://{server.address}")
    yield channel
    run(channel.close)


def call(run: Run, channel: GRPCChannel, method: str, request: KeyValue, **options: Any) -> KeyValue:
    return run(Deferred.fromCoroutine, channel.unary(f"/test.KV/{method}", request, KeyValue, **options))


def failure(run: Run, channel: GRPCChannel, method: str, request: KeyValue, **options: Any) -> GRPCError:
    with pytest.raises(GRPCError) as caught:
        call(run, channel, method, request, **options)
    return caught.value


def test_a_unary_call_round_trips_with_metadata_and_deadline(run: Run, channel: GRPCChannel, server: Server) -> None:
    answer = call(run, channel, "Echo", KeyValue(key=b"k", value=b"abc"), metadata=[("token", "t0k")], timeout=30)
    assert answer == KeyValue(key=b"k", value=b"cba", version=3)
    assert ("token", "t0k") in server.service.metadata
    assert server.service.deadline is not None


def test_messages_larger_than_the_flow_control_windows_go_both_ways(run: Run, channel: GRPCChannel) -> None:
    value = bytes(range(256)) * (12 * 4096)  # 12 MiB against the server's 64 KiB window
    assert call(run, channel, "Echo", KeyValue(value=value)).value == value[::-1]
    assert len(call(run, channel, "Big", KeyValue(version=20 * MiB)).value) == 20 * MiB


def test_calls_share_one_connection(run: Run, channel: GRPCChannel, server: Server) -> None:
    for _ in range(3):
        call(run, channel, "Echo", KeyValue(value=b"x"))
    assert len(server.factory.connections) == 1


def test_a_status_and_its_message_come_back_decoded(run: Run, channel: GRPCChannel) -> None:
    error = failure(run, channel, "Fail", KeyValue(version=StatusCode.OUT_OF_RANGE, value="révision 100%".encode()))
    assert (error.code, error.message) == (StatusCode.OUT_OF_RANGE, "révision 100%")


def test_an_unknown_method_is_unimplemented(run: Run, channel: GRPCChannel) -> None:
    error = failure(run, channel, "Nope", KeyValue())
    assert (error.code, error.message) == (StatusCode.UNIMPLEMENTED, "unknown method Nope for service test.KV")


def test_a_call_past_its_timeout_is_abandoned_and_the_server_told(run: Run, reactor: Any, channel: GRPCChannel, server: Server) -> None:
    assert failure(run, channel, "Hang", KeyValue(), timeout=0.2).code == StatusCode.DEADLINE_EXCEEDED
    run(deferLater, reactor, 0.2)
    assert server.service.cancelled == 1
    assert call(run, channel, "Echo", KeyValue(value=b"ok")).value == b"ko"


def test_cancelling_a_call_resets_its_stream(run: Run, reactor: Any, channel: GRPCChannel, server: Server) -> None:
    def start_and_cancel() -> Deferred:
        pending = Deferred.fromCoroutine(channel.unary("/test.KV/Hang", KeyValue(), KeyValue))
        pending.addErrback(lambda f: f.trap(CancelledError) and "cancelled")
        reactor.callLater(0.1, pending.cancel)
        return pending

    assert run(start_and_cancel) == "cancelled"
    run(deferLater, reactor, 0.2)
    assert server.service.cancelled == 1


def test_a_lost_connection_fails_its_calls_and_the_next_call_reconnects(run: Run, reactor: Any, channel: GRPCChannel, server: Server) -> None:
    def hang_then_drop() -> Deferred:
        pending = Deferred.fromCoroutine(channel.unary("/test.KV/Hang", KeyValue(), KeyValue))
        reactor.callLater(0.1, server.drop)
        return pending

    with pytest.raises(GRPCError) as caught:
        run(hang_then_drop)
    assert caught.value.code == StatusCode.UNAVAILABLE
    assert call(run, channel, "Echo", KeyValue(value=b"again")).value == b"niaga"


def test_a_server_that_is_not_there_is_unavailable(run: Run, reactor: Any, server: Server) -> None:
    server.stop()
    channel = channel_for(reactor, f"http://{server.address}")
    error = failure(run, channel, "Echo", KeyValue())
    assert error.code == StatusCode.UNAVAILABLE and server.address in error.message


def test_tls_with_client_certificates(run: Run, reactor: Any, tmp_path: Path) -> None:
    certificates: Certificates = make_certificates(tmp_path)
    endpoint = server_endpoint(
        reactor, "tcp:0:interface=127.0.0.1", cert_file=certificates.path("server.pem"),
        key_file=certificates.path("server.key"), trusted_ca_file=certificates.path("ca.pem"), client_cert_auth=True,
    )
    server = Server(run, reactor, endpoint)
    try:
        url = f"https://{server.address}"
        channel = channel_for(reactor, url, ca_file=certificates.path("ca.pem"),
                              cert_file=certificates.path("client.pem"), key_file=certificates.path("client.key"))
        assert call(run, channel, "Echo", KeyValue(value=b"tls")).value == b"slt"
        run(channel.close)
        anonymous = channel_for(reactor, url, ca_file=certificates.path("ca.pem"))
        assert failure(run, anonymous, "Echo", KeyValue()).code == StatusCode.UNAVAILABLE
        untrusting = channel_for(reactor, url, ca_file=certificates.path("other-ca.pem"),
                                 cert_file=certificates.path("client.pem"), key_file=certificates.path("client.key"))
        assert failure(run, untrusting, "Echo", KeyValue()).code == StatusCode.UNAVAILABLE
    finally:
        server.stop()


@pytest.mark.parametrize(
    "url, options",
    [("ftp://host:1", {}), ("http://host:1/path", {}), ("http://host:1", {"ca_file": "ca.pem"})],
)
def test_bad_endpoints_are_refused(reactor: Any, url: str, options: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        channel_for(reactor, url, **options)


@pytest.mark.parametrize(
    "headers, code",
    [
        ([(b":status", b"404")], StatusCode.UNIMPLEMENTED),
        ([(b":status", b"503")], StatusCode.UNAVAILABLE),
        ([(b":status", b"200"), (b"content-type", b"application/grpc")], StatusCode.INTERNAL),
        ([(b":status", b"200"), (b"grpc-status", b"0")], StatusCode.INTERNAL),
        ([(b":status", b"200"), (b"grpc-status", b"99")], StatusCode.UNKNOWN),
    ],
    ids=["404", "503", "no grpc-status", "no message", "unknown code"],
)
def test_answers_that_are_not_a_grpc_success_fail(headers: list, code: StatusCode) -> None:
    answer = _Call(None, 1, b"", 100)  # type: ignore[arg-type]
    answer.response(headers)
    with pytest.raises(GRPCError) as caught:
        answer.outcome()
    assert caught.value.code == code


def test_timeouts_are_encoded_in_at_most_eight_digits() -> None:
    assert encode_timeout(0.25) == b"250m"
    assert encode_timeout(10**6) == b"1000000S"
    assert encode_timeout(10**9) == b"16666667M"
    assert encode_timeout(10**13) == b"99999999H"
