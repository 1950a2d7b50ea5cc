"""Snapshot files both ways between k8s-sql and a real etcd 3.5.1, on every backend.

k8s-sql → etcd: ``etcdctl snapshot save`` against k8s-sql, ``etcdutl snapshot status`` and
``etcdutl snapshot restore``, then a real etcd started on the restored directory answers
every key, value, revision and version as k8s-sql did, at the current revision and at older
ones down to the compaction, with the same leases (and the same HashKV).  The ``key``
bucket k8s-sql writes is byte for byte the one etcd writes after the same requests, and so
are the small buckets bbolt stores inline.

etcd → k8s-sql: ``k8s-sql-migrate import`` of the file ``etcdctl snapshot save`` took from
etcd, then a k8s-sql server on the database answers as etcd did.  A damaged or truncated
file is refused with one line, and the database is left untouched.
"""

from __future__ import annotations

import random
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from k8s_sql.proto import rpc_pb2
from k8s_sql.snapshot.reader import BoltReader
from k8s_sql.store.pool import load_dialect
from k8s_sql.store.url import DatabaseURL
from tests.etcdclient import EtcdClient
from tests.migrate.support import migrate
from tests.processes import ETCD, Etcd, K8sSQL, ServerProcess, etcdctl, free_port
from tests.snapshot.support import ETCDUTL, etcdutl_status, expected_status, read

ALL = dict(key=b"\0", range_end=b"\0")
#: Leases granted with these IDs and TTLs, on etcd and k8s-sql alike; the last has no keys.
LEASES = {0x1001: 3600, 0x1002: 1800, 0x1003: 600}


def put(key: bytes, value: bytes, lease: int = 0) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value, lease=lease))


def write_history(client: EtcdClient) -> tuple[int, int]:
    """The same requests, answered with the same revisions by etcd and k8s-sql: many keys per
    revision, binary keys, updates, a value spanning pages, a range deletion, leases, a
    compaction, then changes after it (a put last).  Returns (compaction, last revision)."""
    rng = random.Random(12)
    for lease, ttl in LEASES.items():
        client.Lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(ID=lease, TTL=ttl))
    leased = (0x1001, 0x1002, 0, 0, 0)
    for batch in range(8):
        client.KV.Txn(rpc_pb2.TxnRequest(success=[
            put(b"/registry/pods/ns%d/p-%03d" % (n % 3, n), rng.randbytes(rng.randrange(0, 300)), leased[n % 5])
            for n in range(batch * 40, batch * 40 + 40)
        ]))
    binary = [b"\x00", b"\x00\x00\xff", b"\xff", b"a\x00b", "ключ/ü".encode()]
    client.KV.Txn(rpc_pb2.TxnRequest(success=[put(key, rng.randbytes(64) + b"\x00\xff") for key in binary]))
    for n in range(0, 320, 7):
        client.KV.Put(rpc_pb2.PutRequest(key=b"/registry/pods/ns%d/p-%03d" % (n % 3, n), value=b"v2 %d" % n))
    client.KV.Put(rpc_pb2.PutRequest(key=b"/registry/big", value=rng.randbytes(300_000)))
    client.KV.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"/registry/pods/ns1/", range_end=b"/registry/pods/ns10"))
    compacted = client.KV.Put(rpc_pb2.PutRequest(key=b"/registry/pods/ns0/p-000", value=b"v3")).header.revision - 2
    client.KV.Compact(rpc_pb2.CompactionRequest(revision=compacted, physical=True))
    client.KV.Put(rpc_pb2.PutRequest(key=b"/registry/pods/ns2/p-002", value=b"after", lease=0x1002))
    client.KV.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"/registry/pods/ns0/p-003"))
    last = client.KV.Put(rpc_pb2.PutRequest(key=b"/registry/last", value=b"last")).header.revision
    return compacted, last


def listing(client: EtcdClient, revision: int = 0) -> rpc_pb2.RangeResponse:
    return client.KV.Range(rpc_pb2.RangeRequest(revision=revision, **ALL))


def serialized(response: rpc_pb2.RangeResponse) -> tuple[int, list[bytes]]:
    return response.count, [kv.SerializeToString() for kv in response.kvs]


def lease_table(client: EtcdClient) -> dict[int, tuple[int, int, list[bytes]]]:
    """Lease ID → (granted TTL, seconds left, attached keys)."""
    table = {}
    for status in client.Lease.LeaseLeases(rpc_pb2.LeaseLeasesRequest()).leases:
        ttl = client.Lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=status.ID, keys=True))
        table[status.ID] = (ttl.grantedTTL, ttl.TTL, sorted(ttl.keys))
    return table


def assert_same_leases(found: dict[int, tuple[int, int, list[bytes]]], expected: dict[int, tuple[int, int, list[bytes]]]) -> None:
    """Same IDs, granted TTLs and keys; each lease has at most the time it had left, give or take a second."""
    assert {lease: (granted, keys) for lease, (granted, _, keys) in found.items()} == {
        lease: (granted, keys) for lease, (granted, _, keys) in expected.items()
    }
    for lease, (granted, left, _) in found.items():
        assert expected[lease][1] - 120 <= left <= min(granted, expected[lease][1] + 2)


def compacted_error(client: EtcdClient, revision: int) -> str:
    with pytest.raises(Exception) as raised:
        listing(client, revision)
    return str(raised.value)


class RestoredEtcd(ServerProcess):
    """A real etcd started on a data directory ``etcdutl snapshot restore`` made for member
    ``default`` with peer URL ``peer``."""

    def __init__(self, data_dir: Path, peer: str) -> None:
        self.endpoint = f"127.0.0.1:{free_port()}"
        super().__init__([
            ETCD, "--name", "default", "--data-dir", str(data_dir), "--unsafe-no-fsync",
            "--listen-client-urls", f"http://{self.endpoint}", "--advertise-client-urls", f"http://{self.endpoint}",
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", f"default={peer}",
            "--log-level", "warn",
        ])
        for _ in range(300):
            if etcdctl(self.endpoint, "endpoint", "health", check=False).returncode == 0:
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the restored etcd did not become healthy:\n{self.text()}")

    def __enter__(self) -> "RestoredEtcd":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def restore(snapshot: Path, data_dir: Path) -> str:
    """``etcdutl snapshot restore`` into ``data_dir``; the peer URL the member was given."""
    peer = f"http://127.0.0.1:{free_port()}"
    result = subprocess.run(
        [ETCDUTL, "snapshot", "restore", str(snapshot), "--data-dir", str(data_dir), "--name", "default",
         "--initial-cluster", f"default={peer}", "--initial-advertise-peer-urls", peer],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return peer


def save(endpoint: str, path: Path) -> None:
    saved = etcdctl(endpoint, "snapshot", "save", str(path), timeout=120)
    assert saved.stdout.strip() == f"Snapshot saved at {path}", saved.stderr


@dataclass
class EtcdSnapshot:
    """A snapshot file a real etcd wrote, and what that etcd answered when it was taken."""

    path: Path
    compacted: int
    revision: int
    listing: rpc_pb2.RangeResponse
    leases: dict[int, tuple[int, int, list[bytes]]]


@pytest.fixture(scope="module")
def etcd_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdSnapshot]:
    path = tmp_path_factory.mktemp("etcd") / "etcd.db"
    with Etcd("--unsafe-no-fsync") as etcd, EtcdClient(etcd.endpoint) as client:
        compacted, revision = write_history(client)
        save(etcd.endpoint, path)
        yield EtcdSnapshot(path, compacted, revision, listing(client), lease_table(client))


def top_level_buckets(path: Path) -> dict[bytes, Any]:
    """The buckets of the root bucket of a snapshot file, as the reader decodes them."""
    with open(path, "rb") as file:
        reader = BoltReader(file, path.stat().st_size - 32)
        return dict(reader.entries(reader.root()))


def test_a_k8s_sql_snapshot_restores_into_a_real_etcd(backend: str, tmp_path: Path, etcd_snapshot: EtcdSnapshot) -> None:
    path = tmp_path / "k8s-sql.db"
    with K8sSQL(backend) as server, EtcdClient(server.endpoint) as client:
        compacted, revision = write_history(client)
        assert (compacted, revision) == (etcd_snapshot.compacted, etcd_snapshot.revision)
        history = {at: serialized(listing(client, at)) for at in (compacted, compacted + 1, revision - 1, revision)}
        leases = lease_table(client)
        hash_kv = client.Maintenance.HashKV(rpc_pb2.HashKVRequest()).hash
        save(server.endpoint, path)

    size = path.stat().st_size - 32
    buckets = read(path, size)
    assert etcdutl_status(path) == expected_status(buckets, size) and expected_status(buckets, size)["revision"] == revision
    assert buckets[b"key"] == read(etcd_snapshot.path, etcd_snapshot.path.stat().st_size - 32)[b"key"]
    ours, etcds = top_level_buckets(path), top_level_buckets(etcd_snapshot.path)
    for name in (b"alarm", b"auth", b"authRoles", b"authUsers", b"cluster", b"members_removed"):
        assert ours[name] == etcds[name] and ours[name].root == 0  # the same inline bucket, byte for byte

    peer = restore(path, tmp_path / "restored")
    with RestoredEtcd(tmp_path / "restored", peer) as etcd, EtcdClient(etcd.endpoint) as restored:
        for at, expected in history.items():
            found = listing(restored, at)
            assert found.header.revision == revision
            assert serialized(found) == expected
        assert "required revision has been compacted" in compacted_error(restored, compacted - 1)
        assert_same_leases(lease_table(restored), leases)
        assert restored.Maintenance.HashKV(rpc_pb2.HashKVRequest()).hash == hash_kv
        assert restored.KV.Put(rpc_pb2.PutRequest(key=b"next", value=b"v")).header.revision == revision + 1


def test_a_real_etcds_snapshot_imports_into_k8s_sql(backend: str, etcd_snapshot: EtcdSnapshot) -> None:
    result = migrate("import", "--file", str(etcd_snapshot.path), "--to", backend, "--verify")
    keys = len(etcd_snapshot.listing.kvs)
    assert f"(etcd snapshot {etcd_snapshot.path} at revision {etcd_snapshot.revision}) into" in result.stderr
    assert f"imported {keys} keys and {len(LEASES)} leases" in result.stderr
    assert f"verified: {backend} holds the source's {keys} keys at revision {etcd_snapshot.revision}" in result.stderr
    with K8sSQL(backend) as server, EtcdClient(server.endpoint) as client:
        found = listing(client)
        assert found.header.revision == etcd_snapshot.revision
        assert serialized(found) == serialized(etcd_snapshot.listing)
        assert_same_leases(lease_table(client), etcd_snapshot.leases)
        assert "required revision has been compacted" in compacted_error(client, etcd_snapshot.revision - 1)
        assert client.KV.Put(rpc_pb2.PutRequest(key=b"next", value=b"v")).header.revision == etcd_snapshot.revision + 1


def tables(url: str) -> list[str]:
    """The tables of the database at ``url``."""
    dialect = load_dialect(DatabaseURL.parse(url))
    connection = dialect.connect()
    try:
        cursor = connection.cursor()
        cursor.execute(dialect.tables_statement)
        return [row[0] for row in cursor.fetchall()]
    finally:
        connection.close()


def flip_a_byte(data: bytes) -> bytes:
    return data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 0x01]) + data[len(data) // 2 + 1 :]


def wrong_magic(data: bytes) -> bytes:
    """Both meta pages' magic numbers changed, the sha256 trailer dropped (so only bbolt's own checks apply)."""
    damaged = bytearray(data[:-32])
    damaged[16:20] = damaged[4096 + 16 : 4096 + 20] = b"\0\0\0\0"
    return bytes(damaged)


@pytest.mark.parametrize(
    "damage, options, message",
    [
        (flip_a_byte, (), "the file's sha256 does not match its contents: it is damaged or truncated"),
        (wrong_magic, ("--skip-hash-check",), "not a bbolt database (etcd snapshot): wrong magic number"),
        (lambda data: data[: len(data) // 2 + 100], (), "the file does not end with the sha256 digest"),
        (lambda data: data[: 4096 * 3], ("--skip-hash-check",), "the file is truncated: its meta page counts"),
    ],
    ids=["bad-checksum", "wrong-magic", "cut", "cut-at-a-page"],
)
def test_a_damaged_snapshot_is_refused_and_writes_nothing(
    backend: str, tmp_path: Path, etcd_snapshot: EtcdSnapshot, damage: Any, options: tuple[str, ...], message: str
) -> None:
    path = tmp_path / "damaged.db"
    path.write_bytes(damage(etcd_snapshot.path.read_bytes()))
    result = migrate("import", "--file", str(path), "--to", backend, *options, check=False)
    lines = result.stderr.splitlines()
    assert result.returncode == 1 and len(lines) == 1
    assert lines[0].startswith(f"k8s-sql-migrate import: {path}: ") and message in lines[0]
    assert tables(backend) == []
