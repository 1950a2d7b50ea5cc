"""HTTP/2 abuse against a real server process: a rapid-reset burst from a raw socket, then an
etcd client still served; the cap on connections with TLS."""

from __future__ import annotations

import re
import socket
import ssl
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from hyperframe.frame import Frame, GoAwayFrame, SettingsFrame

from k8s_sql.proto import rpc_pb2
from tests.grpc.h2peer import PREFACE, message, request_headers
from tests.grpc.support import Certificates
from tests.processes import K8sSQL, etcdctl

RANGE = "/etcdserverpb.KV/Range"


def read_frames(sock: socket.socket | ssl.SSLSocket, until: type[Frame], timeout: float = 10.0) -> list[Frame]:
    """Frames the server sends until one of type ``until`` (or the end of the connection)."""
    sock.settimeout(timeout)
    data = b""
    frames: list[Frame] = []
    while not any(isinstance(frame, until) for frame in frames):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        while len(data) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(data[:9]))
            if len(data) < 9 + length:
                break
            frame.parse_body(memoryview(data[9 : 9 + length]))
            frames.append(frame)
            data = data[9 + length :]
    return frames


def metric(server: K8sSQL, kind: str) -> float:
    """``k8s_sql_http2_abuse_total{kind}`` from the client port's /metrics."""
    page = urllib.request.urlopen(f"http://{server.endpoint}/metrics", timeout=10).read().decode()
    match = re.search(rf'^k8s_sql_http2_abuse_total{{kind="{kind}"}} (\S+)$', page, re.MULTILINE)
    assert match, page
    return float(match.group(1))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[K8sSQL]:
    directory: Path = tmp_path_factory.mktemp("abuse")
    with K8sSQL(f"sqlite:///{directory}/k8s-sql.db") as running:
        yield running


def test_rapid_reset_burst_is_calmed_and_clients_are_served(server: K8sSQL) -> None:
    assert etcdctl(server.endpoint, "put", "before", "1").stdout == "OK\n"
    host, port = server.endpoint.split(":")
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    request = message(rpc_pb2.RangeRequest(key=b"before").SerializeToString())
    for _ in range(2000):
        stream = client.get_next_available_stream_id()
        client.send_headers(stream, request_headers(RANGE))
        client.send_data(stream, request)
        client.reset_stream(stream, ErrorCodes.CANCEL)
    with socket.create_connection((host, int(port))) as attacker:
        attacker.sendall(client.data_to_send())
        frames = read_frames(attacker, GoAwayFrame)
        (goaway,) = [frame for frame in frames if isinstance(frame, GoAwayFrame)]
        assert (goaway.error_code, goaway.additional_data) == (ErrorCodes.ENHANCE_YOUR_CALM, b"rapid_reset")
        attacker.settimeout(10)
        while attacker.recv(65536):  # the server closes the connection
            pass
    assert etcdctl(server.endpoint, "put", "after", "2").stdout == "OK\n"
    assert etcdctl(server.endpoint, "get", "before", "--print-value-only").stdout == "1\n"
    assert metric(server, "rapid_reset") == 1.0
    server.wait_for_output(r"HTTP/2 limit broken by .*rapid_reset: \d+ streams reset or refused of \d+ opened")


def h2_connection(endpoint: str, certificates: Certificates) -> ssl.SSLSocket:
    """A TLS connection with ALPN h2 that has had the server's SETTINGS."""
    context = ssl.create_default_context(cafile=certificates.path("ca.pem"))
    context.set_alpn_protocols(["h2"])
    host, port = endpoint.split(":")
    sock = context.wrap_socket(socket.create_connection((host, int(port)), timeout=10), server_hostname=host)
    assert sock.selected_alpn_protocol() == "h2"
    sock.sendall(PREFACE + SettingsFrame(0).serialize())
    assert isinstance(read_frames(sock, SettingsFrame)[0], SettingsFrame)
    return sock


def test_connections_over_the_cap_are_closed_at_once(certificates: Certificates, tmp_path: Path) -> None:
    tls = ["--cert-file", certificates.path("server.pem"), "--key-file", certificates.path("server.key")]
    with K8sSQL(f"sqlite:///{tmp_path}/k8s-sql.db", *tls, "--max-connections", "2") as server:
        held = [h2_connection(server.endpoint, certificates) for _ in range(2)]
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            h2_connection(server.endpoint, certificates)
        server.wait_for_output(r"Closed 1 new connection\(s\) to .*: 2 are open, the most allowed")
        held.pop().close()
        deadline = time.monotonic() + 15
        while True:  # once the server has seen that connection go, a client is served again
            result = etcdctl(f"https://{server.endpoint}", "--cacert", certificates.path("ca.pem"), "put", "k", "v",
                             check=False)
            if result.returncode == 0 or time.monotonic() > deadline:
                break
        assert result.stdout == "OK\n", result.stderr
        for sock in held:
            sock.close()
