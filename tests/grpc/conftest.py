"""Fixtures for the gRPC transport tests: an in-memory server factory on a Clock, throwaway
certificates and test-server processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from twisted.internet.task import Clock

from k8s_sql.grpc.protocol import GRPCServerFactory
from tests.grpc.service import TestService, make_factory
from tests.grpc.support import Certificates, ServerProcess, make_certificates, stop_cleanly


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(clock: Clock) -> tuple[GRPCServerFactory, TestService]:
    """A server factory with the test service, on ``clock``; a module may override it."""
    return make_factory(clock)


@pytest.fixture
def factory(server: tuple[GRPCServerFactory, TestService]) -> GRPCServerFactory:
    return server[0]


@pytest.fixture
def service(server: tuple[GRPCServerFactory, TestService]) -> TestService:
    return server[1]


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certificates"))


def server_files(certificates: Certificates) -> list[str]:
    """Test-server options for its certificate, key and trusted CA."""
    return [
        "--cert-file", certificates.path("server.pem"),
        "--key-file", certificates.path("server.key"),
        "--trusted-ca-file", certificates.path("ca.pem"),
    ]


@pytest.fixture(scope="module")
def cleartext_server() -> Iterator[ServerProcess]:
    server = ServerProcess()
    yield server
    stop_cleanly(server)


@pytest.fixture(scope="module")
def tls_server(certificates: Certificates) -> Iterator[ServerProcess]:
    """TLS; client certificates verified when presented, not required."""
    server = ServerProcess(*server_files(certificates))
    yield server
    stop_cleanly(server)


@pytest.fixture(scope="module")
def mtls_server(certificates: Certificates) -> Iterator[ServerProcess]:
    """TLS with client certificates required (etcd's --client-cert-auth)."""
    server = ServerProcess(*server_files(certificates), "--client-cert-auth")
    yield server
    stop_cleanly(server)
