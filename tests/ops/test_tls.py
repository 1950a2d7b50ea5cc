"""TLS from the command line, with grpcio and etcdctl 3.5: server certificates, client
certificates required (--client-cert-auth) and clients without one refused."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import grpc
import pytest

from k8s_sql.proto import rpc_pb2
from tests.etcdclient import EtcdClient
from tests.grpc.support import Certificates
from tests.processes import K8sSQL, etcdctl


def tls_flags(certificates: Certificates, *, client_cert_auth: bool) -> list[str]:
    flags = ["--cert-file", certificates.path("server.pem"), "--key-file", certificates.path("server.key"),
             "--trusted-ca-file", certificates.path("ca.pem")]
    return flags + ["--client-cert-auth"] if client_cert_auth else flags


def credentials(certificates: Certificates, client: str | None) -> grpc.ChannelCredentials:
    if client is None:
        return grpc.ssl_channel_credentials(certificates.read("ca.pem"))
    return grpc.ssl_channel_credentials(
        certificates.read("ca.pem"), certificates.read(f"{client}.key"), certificates.read(f"{client}.pem"),
    )


def put_and_get(endpoint: str, certificates: Certificates, client: str | None) -> bytes:
    with EtcdClient(endpoint, credentials(certificates, client)) as etcd:
        etcd.KV.Put(rpc_pb2.PutRequest(key=b"tls", value=b"yes"), timeout=10)
        return etcd.KV.Range(rpc_pb2.RangeRequest(key=b"tls"), timeout=10).kvs[0].value


def etcdctl_tls(endpoint: str, certificates: Certificates, client: str | None, *arguments: str) -> tuple[int, str]:
    flags = ["--cacert", certificates.path("ca.pem"), "--command-timeout=5s", "--dial-timeout=5s"]
    if client is not None:
        flags += ["--cert", certificates.path(f"{client}.pem"), "--key", certificates.path(f"{client}.key")]
    result = etcdctl(f"https://{endpoint}", *flags, *arguments, check=False)
    return result.returncode, result.stdout + result.stderr


@pytest.fixture(scope="module")
def mutual_tls(certificates: Certificates, tmp_path_factory: pytest.TempPathFactory) -> Iterator[K8sSQL]:
    directory: Path = tmp_path_factory.mktemp("mtls")
    with K8sSQL(f"sqlite:///{directory}/k8s-sql.db", *tls_flags(certificates, client_cert_auth=True)) as server:
        yield server


@pytest.fixture(scope="module")
def server_tls(certificates: Certificates, tmp_path_factory: pytest.TempPathFactory) -> Iterator[K8sSQL]:
    directory: Path = tmp_path_factory.mktemp("tls")
    with K8sSQL(f"sqlite:///{directory}/k8s-sql.db", *tls_flags(certificates, client_cert_auth=False)) as server:
        yield server


def test_grpcio_with_a_client_certificate(mutual_tls: K8sSQL, certificates: Certificates) -> None:
    assert put_and_get(mutual_tls.endpoint, certificates, "client") == b"yes"


@pytest.mark.parametrize("client", [None, "stranger"], ids=["no certificate", "another CA's certificate"])
def test_grpcio_refused_without_a_trusted_client_certificate(
    mutual_tls: K8sSQL, certificates: Certificates, client: str | None,
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        put_and_get(mutual_tls.endpoint, certificates, client)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_etcdctl_with_a_client_certificate(mutual_tls: K8sSQL, certificates: Certificates) -> None:
    assert etcdctl_tls(mutual_tls.endpoint, certificates, "client", "put", "from-etcdctl", "v1") == (0, "OK\n")
    assert etcdctl_tls(mutual_tls.endpoint, certificates, "client", "get", "from-etcdctl", "--print-value-only") == (0, "v1\n")


@pytest.mark.parametrize(("client", "alert"), [(None, "tls: handshake failure"),
                                               ("stranger", "tls: unknown certificate authority")],
                         ids=["no certificate", "another CA's certificate"])
def test_etcdctl_refused_without_a_trusted_client_certificate(
    mutual_tls: K8sSQL, certificates: Certificates, client: str | None, alert: str,
) -> None:
    status, output = etcdctl_tls(mutual_tls.endpoint, certificates, client, "get", "from-etcdctl")
    assert status == 1
    assert f"authentication handshake failed: remote error: {alert}" in output, output


def test_server_tls_without_client_certificates(server_tls: K8sSQL, certificates: Certificates) -> None:
    assert put_and_get(server_tls.endpoint, certificates, None) == b"yes"
    assert etcdctl_tls(server_tls.endpoint, certificates, None, "get", "tls", "--print-value-only") == (0, "yes\n")
    # A client certificate is checked when one is presented.
    with pytest.raises(grpc.RpcError):
        put_and_get(server_tls.endpoint, certificates, "stranger")


def test_cleartext_clients_are_refused_by_a_tls_server(server_tls: K8sSQL) -> None:
    with EtcdClient(server_tls.endpoint) as etcd, pytest.raises(grpc.RpcError) as refused:
        etcd.KV.Range(rpc_pb2.RangeRequest(key=b"tls"), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
