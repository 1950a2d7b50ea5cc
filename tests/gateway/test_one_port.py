"""gRPC and HTTP/1.1 clients on the same port at once, in cleartext and with TLS (where
ALPN decides, and the client-certificate rules apply to both)."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from k8s_sql.proto import rpc_pb2
from tests.etcdclient import EtcdClient
from tests.gateway.http import GatewayClient
from tests.grpc.support import Certificates
from tests.processes import K8sSQL

ROUNDS = 50


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def tls_context(certificates: Certificates, client: str | None, alpn: list[str]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=certificates.path("ca.pem"))
    if client is not None:
        context.load_cert_chain(certificates.path(f"{client}.pem"), certificates.path(f"{client}.key"))
    context.set_alpn_protocols(alpn)
    return context


def grpc_credentials(certificates: Certificates) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        certificates.read("ca.pem"), certificates.read("client.key"), certificates.read("client.pem"),
    )


def both_at_once(endpoint: str, gateway: Any, grpc_client: EtcdClient) -> None:
    """gRPC and gateway clients write and read at the same time, each watching the other's
    writes: one through a gRPC watch, one through a gateway watch stream."""
    failures: list[BaseException] = []
    watched_by_gateway: list[Any] = []
    # The gateway's watch starts from here, however late its request arrives.
    start = grpc_client.KV.Range(rpc_pb2.RangeRequest(key=b"/"), timeout=10).header.revision + 1

    def gateway_watch() -> None:
        with gateway() as client:
            _, lines = client.stream("/v3/watch", json.dumps({"create_request": {
                "key": b64(b"/grpc/"), "range_end": b64(b"/grpc0"), "start_revision": start}}).encode(),
                headers={"Grpc-Timeout": "4S"})
            watched_by_gateway.extend(lines)

    def over_gateway() -> None:
        try:
            with gateway() as client:
                for index in range(ROUNDS):
                    key = b64(b"/http/%d" % index)
                    assert client.post("/v3/kv/put", {"key": key, "value": b64(b"h")})[0] == 200
                    status, answer = client.post("/v3/kv/range", {"key": key})
                    assert status == 200 and answer["kvs"][0]["value"] == b64(b"h")
        except BaseException as error:
            failures.append(error)

    watcher = threading.Thread(target=gateway_watch)
    watcher.start()
    grpc_watch = grpc_client.Watch.Watch(iter([rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
        key=b"/http/", range_end=b"/http0"))]), timeout=30)
    assert next(grpc_watch).created
    writer = threading.Thread(target=over_gateway)
    writer.start()
    for index in range(ROUNDS):
        grpc_client.KV.Put(rpc_pb2.PutRequest(key=b"/grpc/%d" % index, value=b"g"), timeout=10)
        assert grpc_client.KV.Range(rpc_pb2.RangeRequest(key=b"/grpc/%d" % index), timeout=10).kvs[0].value == b"g"
    writer.join(30)
    assert not failures, failures
    seen: list[bytes] = []
    while len(seen) < ROUNDS:
        seen.extend(event.kv.key for event in next(grpc_watch).events)
    grpc_watch.cancel()
    assert seen == [b"/http/%d" % index for index in range(ROUNDS)]
    watcher.join(30)
    events = [event for line in watched_by_gateway if "result" in line for event in line["result"].get("events", [])]
    assert [base64.b64decode(event["kv"]["key"]) for event in events] == [b"/grpc/%d" % i for i in range(ROUNDS)]
    assert watched_by_gateway[-1]["error"]["grpc_code"] == 4


@pytest.fixture(scope="module")
def cleartext(tmp_path_factory: pytest.TempPathFactory) -> Iterator[K8sSQL]:
    directory: Path = tmp_path_factory.mktemp("cleartext")
    with K8sSQL(f"sqlite:///{directory}/k8s-sql.db") as server:
        yield server


@pytest.fixture(scope="module")
def mutual_tls(certificates: Certificates, tmp_path_factory: pytest.TempPathFactory) -> Iterator[K8sSQL]:
    directory: Path = tmp_path_factory.mktemp("mtls")
    with K8sSQL(f"sqlite:///{directory}/k8s-sql.db", "--cert-file", certificates.path("server.pem"),
                "--key-file", certificates.path("server.key"), "--trusted-ca-file", certificates.path("ca.pem"),
                "--client-cert-auth") as server:
        yield server


def test_grpc_and_http1_at_once_in_cleartext(cleartext: K8sSQL) -> None:
    with EtcdClient(cleartext.endpoint) as grpc_client:
        both_at_once(cleartext.endpoint, lambda: GatewayClient(cleartext.endpoint), grpc_client)


def test_grpc_and_http1_at_once_with_tls(mutual_tls: K8sSQL, certificates: Certificates) -> None:
    # Offering both protocols, as curl does: the gateway is served over HTTP/1.1.
    context = tls_context(certificates, "client", ["h2", "http/1.1"])
    with EtcdClient(mutual_tls.endpoint, grpc_credentials(certificates)) as grpc_client:
        both_at_once(mutual_tls.endpoint, lambda: GatewayClient(mutual_tls.endpoint, context), grpc_client)


@pytest.mark.parametrize("alpn", [["http/1.1"], ["h2", "http/1.1"], []], ids=["http1", "both", "none"])
def test_https_clients_get_http1_whatever_they_offer(mutual_tls: K8sSQL, certificates: Certificates,
                                                     alpn: list[str]) -> None:
    with GatewayClient(mutual_tls.endpoint, tls_context(certificates, "client", alpn)) as client:
        status, answer = client.post("/v3/kv/put", {"key": b64(b"alpn"), "value": b64(b"1")})
        assert status == 200 and "header" in answer
        negotiated = client.connection.sock.selected_alpn_protocol()  # type: ignore[union-attr]
        assert negotiated == (None if not alpn else "http/1.1")


@pytest.mark.parametrize("client", [None, "stranger"], ids=["no certificate", "another CA's certificate"])
def test_https_without_a_trusted_client_certificate_is_refused(mutual_tls: K8sSQL, certificates: Certificates,
                                                               client: str | None) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError)), GatewayClient(
            mutual_tls.endpoint, tls_context(certificates, client, ["http/1.1"])) as gateway:
        gateway.post("/v3/kv/range", {"key": b64(b"x")})


def test_curl_over_https_speaks_http1_to_the_gateway(mutual_tls: K8sSQL, certificates: Certificates) -> None:
    result = subprocess.run(
        ["curl", "-sS", "--cacert", certificates.path("ca.pem"), "--cert", certificates.path("client.pem"),
         "--key", certificates.path("client.key"), "-w", "\n%{http_version}", f"https://{mutual_tls.endpoint}/version"],
        capture_output=True, text=True, timeout=30, check=True,
    )
    body, version = result.stdout.rsplit("\n", 1)
    assert version == "1.1"
    assert json.loads(body) == {"etcdserver": "3.6.15", "etcdcluster": "3.6.0"}
