"""Migrating a real etcd (3.5) into k8s-sql with the ``k8s-sql-migrate`` command, on every
backend, checked key by key through a k8s-sql server started on the copy afterwards.

The etcd holds thousands of keys written the ways Kubernetes and other clients write them:
transactions of many puts (several keys per revision), binary keys and values, a value of
a mebibyte, updated and deleted keys, keys attached to leases, and a compaction.
"""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from k8s_sql.proto import rpc_pb2
from tests.etcdclient import EtcdClient
from tests.grpc.support import Certificates, make_certificates
from tests.migrate.support import migrate
from tests.processes import ETCD, Etcd, K8sSQL, ServerProcess, etcdctl, free_port

ALL = dict(key=b"\0", range_end=b"\0")


def put(key: bytes, value: bytes, lease: int = 0) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value, lease=lease))


def fill(client: EtcdClient) -> dict[str, Any]:
    """Write the sample data; what the checks need to know about it."""
    rng = random.Random(6)
    leases = [client.Lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=ttl)).ID for ttl in (3600, 1800, 7200)]
    for batch in range(30):
        ops = [
            put(b"/registry/configmaps/ns%d/cm-%04d" % (i % 11, i), rng.randbytes(rng.randrange(0, 400)), leases[i % 3] if i % 4 == 0 else 0)
            for i in range(100 * batch, 100 * batch + 100)
        ]
        client.KV.Txn(rpc_pb2.TxnRequest(success=ops))
    binary = [bytes([0]), bytes([0, 0, 255]), bytes([255]), bytes([255, 255, 254]), b"a\x00b", "ключ/ü".encode()]
    client.KV.Txn(rpc_pb2.TxnRequest(success=[put(key, rng.randbytes(64) + b"\x00\xff") for key in binary]))
    for i in range(0, 3000, 13):
        client.KV.Put(rpc_pb2.PutRequest(key=b"/registry/configmaps/ns%d/cm-%04d" % (i % 11, i), value=b"v2 %d" % i))
    client.KV.Put(rpc_pb2.PutRequest(key=b"/registry/big", value=rng.randbytes(1024 * 1024)))
    client.KV.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"/registry/configmaps/ns5/", range_end=b"/registry/configmaps/ns50"))
    middle = client.KV.Range(rpc_pb2.RangeRequest(key=b"x")).header.revision
    client.KV.Compact(rpc_pb2.CompactionRequest(revision=middle - 5, physical=True))
    client.Lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=600))  # a lease with no keys
    client.KV.Put(rpc_pb2.PutRequest(key=b"compact_rev_key", value=b"%d" % middle))
    return {"leases": leases}


@pytest.fixture(scope="module")
def etcd() -> Iterator[Etcd]:
    with Etcd("--unsafe-no-fsync") as etcd, EtcdClient(etcd.endpoint) as client:
        fill(client)
        yield etcd


def listing(client: EtcdClient, revision: int = 0) -> rpc_pb2.RangeResponse:
    return client.KV.Range(rpc_pb2.RangeRequest(revision=revision, **ALL))


def lease_table(client: EtcdClient) -> dict[int, tuple[int, int]]:
    """Lease ID → (granted TTL, seconds left)."""
    table = {}
    for status in client.Lease.LeaseLeases(rpc_pb2.LeaseLeasesRequest()).leases:
        ttl = client.Lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=status.ID))
        table[status.ID] = (ttl.grantedTTL, ttl.TTL)
    return table


def test_an_etcd_copied_into_k8s_sql_serves_the_same_keys(etcd: Etcd, backend: str) -> None:
    with EtcdClient(etcd.endpoint) as source:
        expected = listing(source)
        revision = expected.header.revision
        expected_leases = lease_table(source)
    assert len(expected.kvs) > 2500 and any(kv.mod_revision != kv.create_revision for kv in expected.kvs)

    result = migrate("copy", "--from", f"http://{etcd.endpoint}", "--to", backend, "--verify", "--progress-interval", "0.05")
    assert f"at revision {revision} into" in result.stderr
    assert f"verified: {backend} holds the source's {len(expected.kvs)} keys at revision {revision}" in result.stderr
    assert f"copied {len(expected.kvs)} keys and {len(expected_leases)} leases" in result.stderr
    assert "keys/s" in result.stderr.splitlines()[0]  # a progress report came before the summary

    with K8sSQL(backend) as server, EtcdClient(server.endpoint) as target:
        copied = listing(target)
        assert copied.header.revision == revision
        assert copied.count == expected.count == len(expected.kvs)
        assert [kv.SerializeToString() for kv in copied.kvs] == [kv.SerializeToString() for kv in expected.kvs]
        copied_leases = lease_table(target)
        assert {lease: granted for lease, (granted, _) in copied_leases.items()} == {
            lease: granted for lease, (granted, _) in expected_leases.items()
        }
        for lease, (_, left) in copied_leases.items():
            assert expected_leases[lease][1] - 60 <= left <= expected_leases[lease][1]
        # History starts at the copy: older revisions are compacted, newer ones follow on.
        with pytest.raises(Exception) as compacted:
            listing(target, revision - 1)
        assert "required revision has been compacted" in str(compacted.value)
        written = target.KV.Put(rpc_pb2.PutRequest(key=b"/registry/big", value=b"small", prev_kv=True))
        assert written.header.revision == revision + 1
        assert written.prev_kv == [kv for kv in expected.kvs if kv.key == b"/registry/big"][0]


def test_an_etcd_exported_to_a_file_imports_the_same(etcd: Etcd, tmp_path: Path) -> None:
    dump, database = tmp_path / "etcd.dump.gz", f"sqlite:///{tmp_path}/k8s.db"
    with EtcdClient(etcd.endpoint) as source:
        expected = listing(source)
    migrate("export", "--from", f"http://{etcd.endpoint}", "--file", str(dump), "--quiet")
    result = migrate("import", "--file", str(dump), "--to", database, "--verify")
    assert f"verified: {database} holds the source's {len(expected.kvs)} keys" in result.stderr
    with K8sSQL(database) as server, EtcdClient(server.endpoint) as target:
        assert listing(target).kvs == expected.kvs


class TLSEtcd(ServerProcess):
    """A real etcd serving https:// only to clients with a certificate from ``certificates``' CA."""

    def __init__(self, certificates: Certificates, data_dir: Path) -> None:
        self.certificates = certificates
        self.url = f"https://127.0.0.1:{free_port()}"
        peer = f"http://127.0.0.1:{free_port()}"
        super().__init__([
            ETCD, "--name", "default", "--data-dir", str(data_dir),
            "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", f"default={peer}",
            "--cert-file", certificates.path("server.pem"), "--key-file", certificates.path("server.key"),
            "--trusted-ca-file", certificates.path("ca.pem"), "--client-cert-auth", "--log-level", "warn",
        ])
        for _ in range(300):
            if self.etcdctl("endpoint", "health", check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"etcd did not become healthy:\n{self.text()}")

    def etcdctl(self, *arguments: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return etcdctl(self.url, "--cacert", self.certificates.path("ca.pem"), "--cert", self.certificates.path("client.pem"),
                       "--key", self.certificates.path("client.key"), *arguments, check=check, input=input)

    def tls_options(self, client: str = "client") -> list[str]:
        return ["--etcd-cacert", self.certificates.path("ca.pem"), "--etcd-cert", self.certificates.path(f"{client}.pem"),
                "--etcd-key", self.certificates.path(f"{client}.key")]


def test_an_etcd_behind_tls_with_client_certificates(tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path)
    server = TLSEtcd(certificates, tmp_path / "etcd")
    try:
        for i in range(50):
            server.etcdctl("put", f"/registry/k{i}", f"v{i}")
        database = f"sqlite:///{tmp_path}/k8s.db"
        result = migrate("copy", "--from", server.url, "--to", database, "--verify", *server.tls_options())
        assert "holds the source's 50 keys" in result.stderr
        refused = migrate("copy", "--from", server.url, "--to", f"sqlite:///{tmp_path}/other.db",
                          *server.tls_options("stranger"), "--timeout", "5s", check=False)
        assert refused.returncode == 1 and "UNAVAILABLE" in refused.stderr
    finally:
        server.stop()


def test_an_etcd_with_authentication(tmp_path: Path) -> None:
    with Etcd("--unsafe-no-fsync") as etcd:
        etcdctl(etcd.endpoint, "put", "/registry/secret", "s3cr3t")
        etcdctl(etcd.endpoint, "user", "add", "root", "--new-user-password", "hunter2")
        etcdctl(etcd.endpoint, "auth", "enable")
        database = f"sqlite:///{tmp_path}/k8s.db"
        denied = migrate("copy", "--from", f"http://{etcd.endpoint}", "--to", database, check=False)
        assert denied.returncode == 1 and "user name is empty" in denied.stderr
        result = migrate("copy", "--from", f"http://{etcd.endpoint}", "--to", database, "--etcd-user", "root:hunter2", "--verify")
        assert "holds the source's 1 keys" in result.stderr
