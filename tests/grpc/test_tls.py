"""TLS options from PEM files, the TLS endpoint wrapper and the ``h2tls:`` endpoint plugin."""

from __future__ import annotations

from pathlib import Path

import pytest
from OpenSSL import SSL
from twisted.internet.endpoints import TCP4ServerEndpoint, serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint, IStreamServerEndpointStringParser
from twisted.internet.testing import MemoryReactor
from twisted.plugin import IPlugin, getPlugins
from zope.interface.verify import verifyObject

from k8s_sql.grpc.tls import (
    TLSConfigurationError,
    TLSEndpointParser,
    TLSServerEndpoint,
    server_endpoint,
    server_options,
)

from tests.grpc.support import Certificates


def test_options_negotiate_http1_before_h2(certificates: Certificates) -> None:
    # gRPC clients offer only h2; HTTP clients offering both get the gateway over HTTP/1.1.
    options = server_options(certificates.path("server.pem"), certificates.path("server.key"))
    assert options._acceptableProtocols == [b"http/1.1", b"h2"]
    assert not options.verify


@pytest.mark.parametrize(("require", "flags"), [
    (False, SSL.VERIFY_PEER | SSL.VERIFY_CLIENT_ONCE),
    (True, SSL.VERIFY_PEER | SSL.VERIFY_CLIENT_ONCE | SSL.VERIFY_FAIL_IF_NO_PEER_CERT),
])
def test_options_verify_client_certificates(certificates: Certificates, require: bool, flags: int) -> None:
    options = server_options(certificates.path("server.pem"), certificates.path("server.key"),
                             certificates.path("ca.pem"), client_cert_auth=require)
    assert options.getContext().get_verify_mode() == flags


def test_certificate_chain_files(certificates: Certificates, tmp_path: Path) -> None:
    chain = tmp_path / "chain.pem"
    chain.write_bytes(certificates.read("server.pem") + certificates.read("ca.pem"))
    options = server_options(chain, certificates.path("server.key"))
    assert len(options.extraCertChain) == 1


def test_bad_tls_configurations(certificates: Certificates, tmp_path: Path) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"nothing here")
    cert, key, ca = certificates.path("server.pem"), certificates.path("server.key"), certificates.path("ca.pem")
    with pytest.raises(TLSConfigurationError, match="trusted CA"):
        server_options(cert, key, client_cert_auth=True)
    with pytest.raises(TLSConfigurationError, match="no PEM certificate"):
        server_options(empty, key)
    with pytest.raises(TLSConfigurationError, match="private key"):
        server_options(cert, empty)
    with pytest.raises(TLSConfigurationError, match="cannot use"):
        server_options(cert, certificates.path("client.key"))
    with pytest.raises(TLSConfigurationError, match="no PEM certificate"):
        server_options(cert, key, empty)
    with pytest.raises(TLSConfigurationError, match="both"):
        server_endpoint(MemoryReactor(), "tcp:0", cert_file=cert)
    with pytest.raises(TLSConfigurationError, match="need a server certificate"):
        server_endpoint(MemoryReactor(), "tcp:0", trusted_ca_file=ca)


def test_server_endpoint(certificates: Certificates) -> None:
    reactor = MemoryReactor()
    assert isinstance(server_endpoint(reactor, "tcp:2379:interface=127.0.0.1"), TCP4ServerEndpoint)
    endpoint = server_endpoint(reactor, "tcp:2379:interface=127.0.0.1", cert_file=certificates.path("server.pem"),
                               key_file=certificates.path("server.key"))
    assert isinstance(endpoint, TLSServerEndpoint)
    verifyObject(IStreamServerEndpoint, endpoint)
    endpoint.listen(object())
    ((port, factory, _, interface),) = reactor.tcpServers
    assert (port, interface) == (2379, "127.0.0.1")
    assert factory.__class__.__name__ == "TLSMemoryBIOFactory"


def test_endpoint_plugin(certificates: Certificates) -> None:
    (parser,) = [p for p in getPlugins(IStreamServerEndpointStringParser) if p.prefix == "h2tls"]
    verifyObject(IStreamServerEndpointStringParser, parser)
    verifyObject(IPlugin, parser)
    reactor = MemoryReactor()
    description = (
        f"h2tls:certFile={certificates.path('server.pem')}:keyFile={certificates.path('server.key')}"
        f":trustedCAFile={certificates.path('ca.pem')}:clientCertAuth=yes:tcp:2380:interface=127.0.0.1"
    )
    endpoint = serverFromString(reactor, description)
    assert isinstance(endpoint, TLSServerEndpoint)
    endpoint.listen(object())
    assert [(port, interface) for port, _, _, interface in reactor.tcpServers] == [(2380, "127.0.0.1")]


@pytest.mark.parametrize("description", [
    "h2tls:tcp:2379",
    "h2tls:certFile=a.pem:keyFile=a.key",
])
def test_endpoint_plugin_needs_files_and_an_endpoint(description: str) -> None:
    with pytest.raises(TLSConfigurationError):
        TLSEndpointParser().parseStreamServer(MemoryReactor(), *description.split(":")[1:])


def test_endpoint_plugin_refuses_a_bad_flag(certificates: Certificates) -> None:
    with pytest.raises(TLSConfigurationError, match="clientCertAuth"):
        TLSEndpointParser().parseStreamServer(
            MemoryReactor(), "tcp", "0", certFile=certificates.path("server.pem"),
            keyFile=certificates.path("server.key"), clientCertAuth="maybe",
        )
