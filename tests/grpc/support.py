"""Support for the gRPC transport tests: throwaway certificates and test-server processes."""

from __future__ import annotations

import datetime
import ipaddress
import os
import select
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Certificates:
    """PEM files of a CA, a server certificate (127.0.0.1, localhost) and a client certificate."""

    directory: Path

    def path(self, name: str) -> str:
        return str(self.directory / name)

    def read(self, name: str) -> bytes:
        return (self.directory / name).read_bytes()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))


def make_certificates(directory: Path) -> Certificates:
    """Create ca.pem, server.pem/.key, client.pem/.key, peer.pem/.key (server and client use, for
    127.0.0.1 and localhost) by ca.pem, and stranger.pem/.key (by other-ca.pem)."""
    now = datetime.datetime.now(datetime.UTC)

    def issue(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
              issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False,
              usage: ExtendedKeyUsageOID | list[ExtendedKeyUsageOID] | None = None,
              names: list[x509.GeneralName] = ()) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(subject))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if usage is not None:
            usages = usage if isinstance(usage, list) else [usage]
            builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def save(name: str, *certificates: x509.Certificate) -> None:
        (directory / name).write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = issue("test CA", ca_key, _name("test CA"), ca_key, ca=True)
    save("ca.pem", ca)
    other_key = ec.generate_private_key(ec.SECP256R1())
    save("other-ca.pem", issue("other CA", other_key, _name("other CA"), other_key, ca=True))
    server_key = ec.generate_private_key(ec.SECP256R1())
    save("server.pem", issue("server", server_key, ca.subject, ca_key, usage=ExtendedKeyUsageOID.SERVER_AUTH,
                             names=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]))
    _write_key(directory / "server.key", server_key)
    client_key = ec.generate_private_key(ec.SECP256R1())
    save("client.pem", issue("client", client_key, ca.subject, ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH))
    _write_key(directory / "client.key", client_key)
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    save("stranger.pem", issue("stranger", stranger_key, _name("other CA"), other_key,
                               usage=ExtendedKeyUsageOID.CLIENT_AUTH))
    _write_key(directory / "stranger.key", stranger_key)
    peer_key = ec.generate_private_key(ec.SECP256R1())
    save("peer.pem", issue("peer", peer_key, ca.subject, ca_key,
                           usage=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
                           names=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]))
    _write_key(directory / "peer.key", peer_key)
    return Certificates(directory)


class ServerProcess:
    """The test service in its own process (``tests.grpc.testserver``), on 127.0.0.1."""

    def __init__(self, *arguments: str) -> None:
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.grpc.testserver", *arguments],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=self.log,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        ready, _, _ = select.select([self.process.stdout], [], [], 30)
        line = self.process.stdout.readline().decode() if ready else ""
        if not line.startswith("PORT "):
            raise RuntimeError(f"test server did not start: {line!r} {self.stop()}")
        self.port = int(line.split()[1])
        self.address = f"127.0.0.1:{self.port}"

    def terminate(self) -> None:
        """Ask for a graceful stop (SIGTERM)."""
        self.process.send_signal(signal.SIGTERM)

    def stop(self) -> str:
        """Stop the process (if still running); return what it logged."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
        self.log.seek(0)
        log = self.log.read().decode()
        self.log.close()
        return log


def stop_cleanly(server: ServerProcess) -> None:
    """Stop ``server``; fail if it logged an error (a traceback) on the way."""
    log = server.stop()
    assert "Traceback" not in log and "Unhandled" not in log, log
