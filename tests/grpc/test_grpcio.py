"""The gRPC stack against a real client (grpcio), over cleartext, TLS and mutual TLS.

The server runs the test service in its own process (tests/grpc/testserver.py);
its counters come back through the Stats method.
"""

from __future__ import annotations

import itertools
import json
import socket
import ssl
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
import pytest
from grpc._cython import cygrpc  # channelz, the data grpcio-channelz serves

from k8s_sql.proto.health_pb2 import HealthCheckRequest, HealthCheckResponse

from tests.grpc.support import Certificates, ServerProcess, stop_cleanly

MiB = 1024 * 1024
SERVICE = "/test.Test/"


def connect(server: ServerProcess, certificates: Certificates | None = None, client: str | None = None,
            options: tuple[tuple[str, Any], ...] = ()) -> grpc.Channel:
    """A channel to ``server``; with ``certificates``, TLS (and ``client``'s certificate, if named)."""
    options = (("grpc.max_receive_message_length", 8 * MiB), *options)
    if certificates is None:
        return grpc.insecure_channel(server.address, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=certificates.read("ca.pem"),
        private_key=certificates.read(f"{client}.key") if client else None,
        certificate_chain=certificates.read(f"{client}.pem") if client else None,
    )
    return grpc.secure_channel(server.address, credentials,
                               options=(("grpc.ssl_target_name_override", "localhost"), *options))


def stats(channel: grpc.Channel, objects: bool = False) -> dict[str, int]:
    return json.loads(channel.unary_unary(SERVICE + "Stats")(b"objects" if objects else b"", timeout=10))


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture(params=["cleartext", "tls", "mtls"])
def dial(request: pytest.FixtureRequest, certificates: Certificates) -> Callable[..., grpc.Channel]:
    """Open channels to the test server over each transport: h2c, TLS, TLS with a client certificate."""
    server = request.getfixturevalue(f"{request.param}_server")

    def dial(options: tuple[tuple[str, Any], ...] = ()) -> grpc.Channel:
        if request.param == "cleartext":
            return connect(server, options=options)
        return connect(server, certificates, "client" if request.param == "mtls" else None, options)

    return dial


@pytest.fixture
def channel(dial: Callable[..., grpc.Channel]) -> grpc.Channel:
    with dial() as channel:
        yield channel


def exercise(channel: grpc.Channel) -> None:
    """One call of each shape, and a health check."""
    assert channel.unary_unary(SERVICE + "Echo")(b"ping", timeout=10) == b"ping"
    assert list(channel.unary_stream(SERVICE + "Count")(b"3", timeout=10)) == [b"0", b"1", b"2"]
    assert channel.stream_unary(SERVICE + "Collect")(iter([b"ab", b"c"]), timeout=10) == b"2:3"
    assert list(channel.stream_stream(SERVICE + "Chat")(iter([b"x", b"y"]), timeout=10)) == [b"x", b"y"]
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=HealthCheckRequest.SerializeToString,
        response_deserializer=HealthCheckResponse.FromString,
    )
    assert check(HealthCheckRequest(service=""), timeout=10).status == HealthCheckResponse.SERVING
    watch = channel.unary_stream(
        "/grpc.health.v1.Health/Watch",
        request_serializer=HealthCheckRequest.SerializeToString,
        response_deserializer=HealthCheckResponse.FromString,
    )
    statuses = watch(HealthCheckRequest(service=""), timeout=10)
    assert next(statuses).status == HealthCheckResponse.SERVING
    statuses.cancel()


# Transports


def test_each_call_shape(channel: grpc.Channel) -> None:
    exercise(channel)


@pytest.mark.parametrize("client", [None, "client"])
def test_tls_with_and_without_client_certificate(tls_server: ServerProcess, certificates: Certificates,
                                                 client: str | None) -> None:
    with connect(tls_server, certificates, client) as channel:
        exercise(channel)


def test_mutual_tls(mtls_server: ServerProcess, certificates: Certificates) -> None:
    with connect(mtls_server, certificates, "client") as channel:
        exercise(channel)


@pytest.mark.parametrize("client", [None, "stranger"])
def test_mutual_tls_refuses_missing_or_unknown_client_certificates(
        mtls_server: ServerProcess, certificates: Certificates, client: str | None) -> None:
    with connect(mtls_server, certificates, client) as channel:
        with pytest.raises(grpc.RpcError) as raised:
            channel.unary_unary(SERVICE + "Echo")(b"x", timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tls_refuses_a_client_certificate_from_an_unknown_ca(tls_server: ServerProcess,
                                                              certificates: Certificates) -> None:
    with connect(tls_server, certificates, "stranger") as channel:
        with pytest.raises(grpc.RpcError) as raised:
            channel.unary_unary(SERVICE + "Echo")(b"x", timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


def test_h2tls_endpoint_description(certificates: Certificates) -> None:
    description = (
        f"h2tls:certFile={certificates.path('server.pem')}:keyFile={certificates.path('server.key')}"
        f":trustedCAFile={certificates.path('ca.pem')}:clientCertAuth=yes:tcp:0:interface=127.0.0.1"
    )
    server = ServerProcess("--listen", description)
    try:
        with connect(server, certificates, "client") as channel:
            exercise(channel)
        with connect(server, certificates) as channel, pytest.raises(grpc.RpcError):
            channel.unary_unary(SERVICE + "Echo")(b"x", timeout=5)
    finally:
        stop_cleanly(server)


@pytest.mark.parametrize(("offered", "selected"), [(["h2"], "h2"), (["grpc-exp", "h2"], "h2"),
                                                   (["h2", "http/1.1"], "http/1.1")])
def test_tls_negotiates_h2_by_alpn(tls_server: ServerProcess, certificates: Certificates, offered: list[str],
                                   selected: str) -> None:
    # gRPC clients offer h2 alone; a client offering HTTP/1.1 too is given it (the JSON gateway).
    context = ssl.create_default_context(cafile=certificates.path("ca.pem"))
    context.set_alpn_protocols(offered)
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.selected_alpn_protocol() == selected
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


# Calls


def test_metadata_compression_and_statuses(channel: grpc.Channel) -> None:
    answer, call = channel.unary_unary(SERVICE + "Metadata").with_call(
        b"", metadata=[("x-token", "secret"), ("x-raw-bin", b"\x00\xff")], timeout=10
    )
    seen = json.loads(answer)
    assert ["x-token", "secret"] in seen["metadata"] and ["x-raw-bin", "00ff"] in seen["metadata"]
    assert 0 < seen["deadline"]
    assert ("x-trailer", "yes") in call.trailing_metadata()
    assert ("x-blob-bin", b"\x00\x01\xff") in call.trailing_metadata()
    echo = channel.unary_unary(SERVICE + "Echo")
    assert echo(b"z" * 10000, compression=grpc.Compression.Gzip, timeout=10) == b"z" * 10000
    with pytest.raises(grpc.RpcError) as raised:
        channel.unary_unary(SERVICE + "Fail")("5:no such thing ✓".encode(), timeout=10)
    assert (raised.value.code(), raised.value.details()) == (grpc.StatusCode.NOT_FOUND, "no such thing ✓")
    with pytest.raises(grpc.RpcError) as raised:
        channel.unary_unary("/etcdserverpb.Nope/Range")(b"", timeout=10)
    assert (raised.value.code(), raised.value.details()) == (
        grpc.StatusCode.UNIMPLEMENTED, "unknown service etcdserverpb.Nope"
    )


def test_deadline_cancels_the_handler(channel: grpc.Channel) -> None:
    before = stats(channel)["cancelled"]
    with pytest.raises(grpc.RpcError) as raised:
        channel.unary_unary(SERVICE + "Hang")(b"", timeout=0.3)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_for(lambda: stats(channel)["cancelled"] == before + 1)


def test_client_cancel_cancels_the_handler(channel: grpc.Channel) -> None:
    before = stats(channel)["cancelled"]
    responses = channel.unary_stream(SERVICE + "HangStream")(b"", timeout=30)
    assert next(responses) == b"first"
    responses.cancel()
    wait_for(lambda: stats(channel)["cancelled"] == before + 1)
    assert stats(channel)["open_calls"] == 1  # the Stats call itself


def test_thousand_concurrent_calls_on_one_connection(channel: grpc.Channel) -> None:
    wait_for(lambda: stats(channel)["connections"] == 1)  # earlier tests' connections are gone
    gather = channel.unary_unary(SERVICE + "Gather")
    calls = [gather.future(b"1000", timeout=30) for _ in range(1000)]
    assert [call.result() for call in calls] == [b"1000"] * 1000
    seen = stats(channel)
    assert seen["max_open_calls"] >= 1000 and seen["connections"] == 1


def test_large_messages_both_ways(channel: grpc.Channel) -> None:
    large = bytes(range(256)) * int(1.9 * MiB / 256)
    assert channel.unary_unary(SERVICE + "Echo")(large, timeout=30) == large
    answers = channel.stream_stream(SERVICE + "Chat")(iter([large, large[::-1], large]), timeout=30)
    assert list(answers) == [large, large[::-1], large]


def test_oversized_message_is_refused(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        channel.unary_unary(SERVICE + "Echo")(b"x" * (5 * MiB), timeout=30)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert raised.value.details() == "grpc: received message larger than max (5242880 vs. 2097152)"
    assert channel.unary_unary(SERVICE + "Echo")(b"after", timeout=10) == b"after"


def test_slow_reader_holds_the_stream_back(dial: Callable[..., grpc.Channel]) -> None:
    # Without BDP probing the client keeps its 64 KiB windows, instead of growing them
    # to read the whole stream ahead of the application.
    with dial((("grpc.http2.bdp_probe", 0),)) as channel:
        size = 1024
        responses = channel.unary_stream(SERVICE + "Count")(b"10000:%d" % size, timeout=60)
        read = [next(responses) for _ in range(100)]
        time.sleep(0.5)  # a slow reader: the server must wait, not buffer the rest
        ahead = stats(channel)["sent"] - len(read)
        read.extend(responses)
        assert read == [b"x" * size] * 10000
        # The client's window plus the server's send buffer, far from the 10 MiB streamed.
        assert ahead * size <= 256 * 1024, f"the server ran {ahead} messages ahead of the reader"
        assert stats(channel)["max_buffered"] <= 64 * 1024 + size + 5


def test_keepalive_pings_are_not_policed(dial: Callable[..., grpc.Channel]) -> None:
    options = (
        ("grpc.keepalive_time_ms", 50),
        ("grpc.keepalive_timeout_ms", 1000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    )
    with dial(options) as channel:
        responses = channel.unary_stream(SERVICE + "HangStream")(b"", timeout=30)
        assert next(responses) == b"first"
        pinged = keepalives_sent()
        wait_for(lambda: keepalives_sent() >= pinged + 3, timeout=30)  # an idle watch, pinged all along
        assert channel.unary_unary(SERVICE + "Echo")(b"alive", timeout=5) == b"alive"
        responses.cancel()


def keepalives_sent() -> int:
    """Keepalive pings grpcio sent on every connection of this process, from its channelz data."""
    sockets = []
    for channel in json.loads(cygrpc.channelz_get_top_channels(0)).get("channel", []):
        for ref in channel.get("subchannelRef", []):
            subchannel = json.loads(cygrpc.channelz_get_subchannel(int(ref["subchannelId"])))["subchannel"]
            sockets.extend(int(ref["socketId"]) for ref in subchannel.get("socketRef", []))
    return sum(
        int(json.loads(cygrpc.channelz_get_socket(socket_id))["socket"]["data"].get("keepAlivesSent", 0))
        for socket_id in sockets
    )


def test_vanishing_clients_leave_nothing_behind(dial: Callable[..., grpc.Channel], channel: grpc.Channel) -> None:
    wait_for(lambda: stats(channel)["open_calls"] == 1)
    before = stats(channel, objects=True)
    started = before["started"]
    for _ in range(20):
        # Its own connection (grpcio shares them between channels by default), small windows.
        client = dial((("grpc.use_local_subchannel_pool", 1), ("grpc.http2.bdp_probe", 0)))
        hanging = [client.unary_unary(SERVICE + "Hang").future(b"", timeout=30) for _ in range(10)]
        flooding = client.stream_unary(SERVICE + "Idle").future(itertools.repeat(b"y" * 1000), timeout=30)
        streaming = client.unary_stream(SERVICE + "Count")(b"100000:100", timeout=30)
        next(streaming)
        started += 11
        wait_for(lambda expected=started: stats(channel)["started"] == expected)
        client.close()
        for call in (*hanging, flooding):
            with pytest.raises((grpc.RpcError, futures.CancelledError)):
                call.result()
    wait_for(lambda: stats(channel)["open_calls"] == 1 and stats(channel)["connections"] == 1)
    after = stats(channel, objects=True)
    assert (after["protocols"], after["calls"]) == (before["protocols"], before["calls"])
    assert after["cancelled"] - before["cancelled"] == 20 * 11


# Graceful shutdown


def test_shutdown_lets_calls_in_flight_finish() -> None:
    server = ServerProcess("--grace", "10")
    try:
        with connect(server) as channel:
            assert channel.unary_unary(SERVICE + "Echo")(b"up", timeout=5) == b"up"
            sleeping = channel.unary_unary(SERVICE + "Sleep").future(b"1.0", timeout=30)
            time.sleep(0.3)
            server.terminate()
            assert sleeping.result() == b"1.0"
        assert server.process.wait(10) == 0
    finally:
        stop_cleanly(server)


def test_shutdown_grace_ends_calls_unavailable() -> None:
    server = ServerProcess("--grace", "0.5")
    try:
        with connect(server) as channel:
            hanging = channel.unary_unary(SERVICE + "Hang").future(b"", timeout=30)
            wait_for(lambda: stats(channel)["started"] == 1)
            server.terminate()
            with pytest.raises(grpc.RpcError) as raised:
                hanging.result()
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert server.process.wait(10) == 0
    finally:
        stop_cleanly(server)
