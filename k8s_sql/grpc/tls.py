"""TLS for gRPC: server contexts that negotiate ALPN "h2", on any stream server endpoint.

gRPC clients refuse a TLS connection that does not select "h2" by ALPN, which
Twisted's ``ssl:`` endpoint cannot do; here TLS is layered over any endpoint instead
(``tcp:``, ``unix:``, systemd's ``systemd:`` ...) with ``TLSMemoryBIOFactory``.

ALPN also offers "http/1.1", for etcd's JSON gateway on the same port
(``k8s_sql.gateway``), and prefers it: gRPC clients offer only "h2" (and grpc-exp),
while HTTP clients such as curl offer both and speak the gateway over HTTP/1.1.
"""

from __future__ import annotations

import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from OpenSSL import crypto
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorCore,
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)
from twisted.internet.ssl import CertificateOptions, TLSVersion
from twisted.plugin import IPlugin
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

#: In order of preference (see the module docstring).
ALPN_PROTOCOLS = (b"http/1.1", b"h2")
_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


class TLSConfigurationError(ValueError):
    """The TLS files or options cannot make a server context."""


def server_options(
    cert_file: str | Path,
    key_file: str | Path,
    trusted_ca_file: str | Path | None = None,
    client_cert_auth: bool = False,
) -> CertificateOptions:
    """Build the server's TLS options from PEM files, as etcd's flags describe them.

    ``cert_file`` holds the server certificate, optionally followed by its intermediate
    chain; ``key_file`` its private key.  With ``trusted_ca_file``, client certificates
    are verified against those CAs when presented; ``client_cert_auth`` (etcd's
    ``--client-cert-auth``) also requires one.  ALPN offers "http/1.1" and "h2"; TLS 1.2
    is the minimum.
    """
    if client_cert_auth and trusted_ca_file is None:
        raise TLSConfigurationError("client certificate authentication needs a trusted CA file")
    chain = load_certificates(cert_file)
    if not chain:
        raise TLSConfigurationError(f"{cert_file} holds no PEM certificate")
    try:
        key = load_pem_private_key(Path(key_file).read_bytes(), password=None)
    except (ValueError, TypeError) as e:
        raise TLSConfigurationError(f"{key_file} holds no usable unencrypted PEM private key: {e}") from None
    authorities = load_certificates(trusted_ca_file) if trusted_ca_file is not None else []
    if trusted_ca_file is not None and not authorities:
        raise TLSConfigurationError(f"{trusted_ca_file} holds no PEM certificate")
    # cryptography objects: pyOpenSSL deprecates its own types here, though Twisted's stubs
    # still name only those.
    options = CertificateOptions(
        privateKey=key,  # type: ignore[arg-type]
        certificate=chain[0],  # type: ignore[arg-type]
        extraCertChain=chain[1:],  # type: ignore[arg-type]
        verify=bool(authorities),
        caCerts=[crypto.X509.from_cryptography(authority) for authority in authorities] or None,
        requireCertificate=client_cert_auth,
        acceptableProtocols=list(ALPN_PROTOCOLS),
        raiseMinimumTo=TLSVersion.TLSv1_2,
    )
    # Build the context now, so that a key not matching its certificate fails here.
    try:
        options.getContext()
    except Exception as e:
        raise TLSConfigurationError(f"cannot use {cert_file} with {key_file}: {e}") from None
    return options


def load_certificates(path: str | Path) -> list[x509.Certificate]:
    """Every PEM certificate in the file at ``path``, in order (``TLSConfigurationError`` for a bad one)."""
    data = Path(path).read_bytes()
    try:
        return [x509.load_pem_x509_certificate(block) for block in _PEM_CERTIFICATE.findall(data)]
    except ValueError as e:
        raise TLSConfigurationError(f"{path}: {e}") from None


@implementer(IStreamServerEndpoint)
class TLSServerEndpoint:
    """Serve TLS (with the given options) over any other stream server endpoint."""

    def __init__(self, wrapped: IStreamServerEndpoint, options: CertificateOptions) -> None:
        #: The endpoint listened on, below TLS.
        self.wrapped = wrapped
        self._options = options

    def wrap(self, protocolFactory: IProtocolFactory) -> TLSMemoryBIOFactory:
        """``protocolFactory`` behind this endpoint's TLS."""
        factory = TLSMemoryBIOFactory(self._options, False, protocolFactory)
        factory.noisy = False
        return factory

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        """Listen on the wrapped endpoint; each connection is TLS, then ``protocolFactory``."""
        return self.wrapped.listen(self.wrap(protocolFactory))


def server_endpoint(
    reactor: object,
    description: str,
    *,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
    trusted_ca_file: str | Path | None = None,
    client_cert_auth: bool = False,
) -> IStreamServerEndpoint:
    """The endpoint a gRPC server listens on, from etcd-style flags.

    ``description`` is any Twisted server endpoint description (e.g.
    ``tcp:2379:interface=127.0.0.1``).  With ``cert_file`` and ``key_file`` the
    connections are TLS with ALPN "h2" (see :func:`server_options`); without them,
    cleartext HTTP/2 with prior knowledge.
    """
    endpoint = serverFromString(reactor, description)
    if cert_file is None and key_file is None:
        if trusted_ca_file is not None or client_cert_auth:
            raise TLSConfigurationError("client certificate options need a server certificate and key")
        return endpoint
    if cert_file is None or key_file is None:
        raise TLSConfigurationError("TLS needs both a certificate file and a key file")
    return TLSServerEndpoint(endpoint, server_options(cert_file, key_file, trusted_ca_file, client_cert_auth))


@implementer(IPlugin, IStreamServerEndpointStringParser)
class TLSEndpointParser:
    """The ``h2tls:`` endpoint description: TLS with ALPN "h2" around another description.

    ``h2tls:certFile=server.pem:keyFile=server.key[:trustedCAFile=ca.pem][:clientCertAuth=yes]:``
    followed by the wrapped description, e.g. ``tcp:2379:interface=127.0.0.1``.
    """

    prefix = "h2tls"
    _OPTIONS = ("certFile", "keyFile", "trustedCAFile", "clientCertAuth")

    def parseStreamServer(self, reactor: IReactorCore, *args: object, **kwargs: object) -> IStreamServerEndpoint:
        """Build the endpoint from the description's arguments (all text)."""
        options = {name: str(kwargs.pop(name)) for name in self._OPTIONS if name in kwargs}
        if "certFile" not in options or "keyFile" not in options:
            raise TLSConfigurationError("h2tls: needs certFile= and keyFile=")
        if not args:
            raise TLSConfigurationError("h2tls: needs the description of the endpoint to wrap")
        auth = options.get("clientCertAuth", "no").lower()
        if auth not in ("yes", "no", "true", "false"):
            raise TLSConfigurationError(f"h2tls: clientCertAuth must be yes or no, not {auth!r}")
        return server_endpoint(
            reactor,
            _unparse(args, kwargs),
            cert_file=options["certFile"],
            key_file=options["keyFile"],
            trusted_ca_file=options.get("trustedCAFile"),
            client_cert_auth=auth in ("yes", "true"),
        )


def _unparse(args: tuple[object, ...], kwargs: dict[str, object]) -> str:
    """Rebuild an endpoint description from parsed arguments."""

    def quote(value: object) -> str:
        return str(value).replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")

    return ":".join([quote(arg) for arg in args] + [f"{quote(k)}={quote(v)}" for k, v in kwargs.items()])
