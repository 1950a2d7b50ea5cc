"""Server keepalive end to end: a client not heard from is PINGed, and dropped if it stays
silent; clients that answer (every HTTP/2 client does) keep their connections."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from h2.config import H2Configuration
from h2.connection import H2Connection

from k8s_sql.proto import rpc_pb2
from tests.etcdclient import EtcdClient
from tests.processes import K8sSQL

KEEPALIVE = ("--grpc-keepalive-interval", "1s", "--grpc-keepalive-timeout", "1s")
DROPPED = "no answer to a keepalive ping"


def test_a_silent_client_is_disconnected(tmp_path: Path) -> None:
    with K8sSQL(f"sqlite:///{tmp_path}/db", *KEEPALIVE) as server:
        host, port = server.endpoint.split(":")
        client = H2Connection(H2Configuration(client_side=True))
        client.initiate_connection()
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(client.data_to_send())
            started = time.monotonic()
            received = b""
            try:
                # Read what the server sends, never answering: its PING goes unacknowledged.
                while chunk := sock.recv(65536):
                    received += chunk
            except ConnectionResetError:
                pass
            waited = time.monotonic() - started
        server.wait_for_output(DROPPED, timeout=5)
    assert 1.5 < waited < 8, waited
    assert received  # the server's SETTINGS and PING came before the close


def test_a_client_that_answers_pings_keeps_its_connection(tmp_path: Path) -> None:
    with K8sSQL(f"sqlite:///{tmp_path}/db", *KEEPALIVE) as server, EtcdClient(server.endpoint) as client:
        client.KV.Put(rpc_pb2.PutRequest(key=b"k", value=b"v"), timeout=10)
        time.sleep(4)  # several keepalive rounds on a quiet connection
        assert client.KV.Range(rpc_pb2.RangeRequest(key=b"k"), timeout=10).kvs[0].value == b"v"
        assert DROPPED not in server.text()
