"""Run the test service on a real reactor: ``python -m tests.grpc.testserver [options]``.

Prints ``PORT <n>`` once listening on 127.0.0.1; stops gracefully on SIGTERM.
"""

from __future__ import annotations

import argparse
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import globalLogBeginner, textFileLogObserver
from zope.interface import implementer

from k8s_sql.grpc.service import GRPCServer
from k8s_sql.grpc.tls import server_endpoint

from tests.grpc.service import make_factory


@implementer(IStreamServerEndpoint)
class AnnouncingEndpoint:
    """Prints the port once listening, for the test that started this process."""

    def __init__(self, wrapped: IStreamServerEndpoint) -> None:
        self._wrapped = wrapped

    def listen(self, factory: Factory) -> Deferred[IListeningPort]:
        def announce(port: IListeningPort) -> IListeningPort:
            print(f"PORT {port.getHost().port}", flush=True)
            return port

        return self._wrapped.listen(factory).addCallback(announce)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", default="tcp:0:interface=127.0.0.1", help="an endpoint description")
    parser.add_argument("--cert-file")
    parser.add_argument("--key-file")
    parser.add_argument("--trusted-ca-file")
    parser.add_argument("--client-cert-auth", action="store_true")
    parser.add_argument("--grace", type=float, default=5.0)
    options = parser.parse_args()
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    factory, _ = make_factory(reactor)
    endpoint = server_endpoint(
        reactor, options.listen, cert_file=options.cert_file, key_file=options.key_file,
        trusted_ca_file=options.trusted_ca_file, client_cert_auth=options.client_cert_auth,
    )
    service = GRPCServer(factory, [(options.listen, AnnouncingEndpoint(endpoint))], grace=options.grace)
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()


if __name__ == "__main__":
    main()
