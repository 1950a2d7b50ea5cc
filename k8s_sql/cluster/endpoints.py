"""Addresses and URLs of the servers' ports, and endpoints reaching a peer's URL.

Peer URLs name where a server takes commit signals from the others (``--peer-listen``):
``http://host:port`` (plain TCP), ``https://host:port`` (TLS, with the ``--peer-*``
files) or ``unix:///path``.  They speak the peer protocol (``k8s_sql.cluster.wire``),
not HTTP: the schemes are etcd's, so that tools showing etcd's member list show them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from OpenSSL import crypto
from twisted.internet import ssl
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IAddress, IOpenSSLClientConnectionCreator, IStreamClientEndpoint

from k8s_sql.grpc.tls import TLSConfigurationError, load_certificates, server_options

#: The schemes of peer URLs.
PEER_URL_SCHEMES = ("http", "https", "unix")
#: Seconds a connection to a peer may take to be made.
CONNECT_TIMEOUT = 5.0
_WILDCARDS = ("0.0.0.0", "::")


def describe_address(address: IAddress) -> str:
    """``host:port`` for an IP address, the path for a UNIX socket, else its repr."""
    if isinstance(address, (IPv4Address, IPv6Address)):
        host = f"[{address.host}]" if isinstance(address, IPv6Address) else address.host
        return f"{host}:{address.port}"
    if isinstance(address, UNIXAddress):
        return str(address.name, "utf-8") if isinstance(address.name, bytes) else str(address.name)
    return repr(address)


def address_url(address: IAddress, tls: bool) -> str:
    """The URL of a listening address: ``http(s)://host:port`` or ``unix(s)://path``."""
    if isinstance(address, UNIXAddress):
        return f"{'unixs' if tls else 'unix'}://{describe_address(address)}"
    return f"{'https' if tls else 'http'}://{describe_address(address)}"


def peer_url(address: IAddress, tls: bool) -> str:
    """The peer URL of the peer port's ``address``.

    @raise ValueError: the port listens on every address, so its own says nothing of where
        the other servers reach it.
    """
    if isinstance(address, (IPv4Address, IPv6Address)) and address.host in _WILDCARDS:
        raise ValueError(
            f"--peer-listen listens on every address ({describe_address(address)}): give --advertise-peer-urls"
        )
    return address_url(address, tls)


def check_peer_url(url: str) -> None:
    """Refuse a peer URL that is not ``http(s)://host:port`` or ``unix:///path`` (``ValueError``)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError as error:
        raise ValueError(f"bad peer URL {url!r}: {error}") from None
    if parts.scheme not in PEER_URL_SCHEMES or not (parts.netloc or parts.path):
        raise ValueError(f"bad peer URL {url!r}: use http://host:port, https://host:port or unix:///path")
    if parts.scheme != "unix" and (not parts.hostname or port is None):
        raise ValueError(f"bad peer URL {url!r}: use http://host:port or https://host:port")


@dataclass(frozen=True)
class PeerTLS:
    """What this server trusts and presents on the connections it makes to peers.

    ``https`` peer URLs are verified against ``trust`` (the system's CAs when ``None``),
    their host name or address checked; ``chain`` (the certificate, then intermediates)
    and ``key`` are presented to peers asking for a client certificate.
    """

    trust: Any = None
    chain: tuple[x509.Certificate, ...] = ()
    key: Any = None

    @classmethod
    def from_files(cls, cert_file: str | None, key_file: str | None, trusted_ca_file: str | None) -> PeerTLS:
        """Load the ``--peer-*`` files (``TLSConfigurationError``, ``OSError`` when unusable)."""
        if (cert_file is None) != (key_file is None):
            raise TLSConfigurationError("peer TLS needs both --peer-cert-file and --peer-key-file")
        trust = None
        if trusted_ca_file is not None:
            authorities = load_certificates(trusted_ca_file)
            if not authorities:
                raise TLSConfigurationError(f"{trusted_ca_file} holds no PEM certificate")
            trust = ssl.trustRootFromCertificates(
                [ssl.Certificate(crypto.X509.from_cryptography(authority)) for authority in authorities]
            )
        if cert_file is None or key_file is None:
            return cls(trust)
        # Checks that the files hold a certificate and its key, as the peer port's own TLS does.
        server_options(cert_file, key_file)
        key = load_pem_private_key(Path(key_file).read_bytes(), password=None)
        return cls(trust, tuple(load_certificates(cert_file)), key)

    def client_options(self, host: str) -> IOpenSSLClientConnectionCreator:
        """TLS options for a connection to the peer ``host``."""
        if not self.chain:
            return ssl.optionsForClientTLS(host, trustRoot=self.trust)
        presented = {"privateKey": self.key, "certificate": self.chain[0], "extraCertChain": list(self.chain[1:])}
        return ssl.optionsForClientTLS(host, trustRoot=self.trust, extraCertificateOptions=presented)


def peer_endpoint(reactor: Any, url: str, tls: PeerTLS) -> IStreamClientEndpoint:
    """An endpoint connecting to the peer at ``url`` (checked by ``check_peer_url``)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return UNIXClientEndpoint(reactor, parts.netloc + parts.path, timeout=CONNECT_TIMEOUT)
    assert parts.hostname is not None and parts.port is not None
    endpoint = HostnameEndpoint(reactor, parts.hostname, parts.port, timeout=CONNECT_TIMEOUT)
    if parts.scheme == "https":
        return wrapClientTLS(tls.client_options(parts.hostname), endpoint)
    return endpoint
