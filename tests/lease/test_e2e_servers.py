"""Leases across processes: two servers on one database, and a restart with live leases."""

from __future__ import annotations

import time
from typing import Callable

from k8s_sql.proto import rpc_pb2
from tests.etcdclient import EtcdClient
from tests.processes import K8sSQL


def grant(client: EtcdClient, lease_id: int, ttl: int) -> None:
    client.Lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(ID=lease_id, TTL=ttl), timeout=10)


def put(client: EtcdClient, key: bytes, lease: int) -> None:
    client.KV.Put(rpc_pb2.PutRequest(key=key, value=b"v", lease=lease), timeout=10)


def count(client: EtcdClient, key: bytes) -> int:
    return client.KV.Range(rpc_pb2.RangeRequest(key=key, count_only=True), timeout=10).count


def time_to_live(client: EtcdClient, lease_id: int) -> rpc_pb2.LeaseTimeToLiveResponse:
    return client.Lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id, keys=True), timeout=10)


def keep_alive(client: EtcdClient, lease_id: int) -> int:
    """Renew once, on a keep-alive stream of its own; the TTL answered."""
    [response] = client.Lease.LeaseKeepAlive(iter([rpc_pb2.LeaseKeepAliveRequest(ID=lease_id)]), timeout=10)
    return response.TTL


def eventually(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.1)


def test_a_lease_kept_alive_through_one_server_is_expired_by_the_other(backend: str) -> None:
    with K8sSQL(backend, "--name", "survivor") as survivor, EtcdClient(survivor.endpoint) as through_survivor:
        with K8sSQL(backend, "--name", "keeper") as keeper, EtcdClient(keeper.endpoint) as through_keeper:
            grant(through_survivor, 5, 3)
            put(through_survivor, b"held", 5)
            # A witness with the same TTL, granted after lease 5 and never renewed: once a sweep
            # has expired it, lease 5's first deadline has passed under a sweep too.
            grant(through_survivor, 6, 3)
            put(through_survivor, b"witness", 6)
            renewals = 0
            while count(through_survivor, b"witness"):
                assert keep_alive(through_keeper, 5) == 3
                renewals += 1
                time.sleep(0.2)  # the pace of a keep-alive loop, well inside the TTL
            assert renewals > 1
            assert count(through_survivor, b"held") == 1
            assert time_to_live(through_survivor, 5).TTL > 0
        # The keeper is gone; only the survivor can expire the lease.
        eventually(lambda: count(through_survivor, b"held") == 0)
        assert time_to_live(through_survivor, 5).TTL == -1


def test_any_server_renews_any_lease(backend: str) -> None:
    with K8sSQL(backend, "--name", "one") as one, K8sSQL(backend, "--name", "other") as other:
        with EtcdClient(one.endpoint) as first, EtcdClient(other.endpoint) as second:
            grant(first, 6, 30)
            assert keep_alive(second, 6) == 30
            assert keep_alive(second, 404) == 0
            assert time_to_live(second, 6).grantedTTL == 30


def test_a_restart_keeps_leases_to_their_deadline(backend: str) -> None:
    with K8sSQL(backend) as server, EtcdClient(server.endpoint) as client:
        before_grant = time.monotonic()
        grant(client, 1, 60)
        after_grant = time.monotonic()
        put(client, b"long", 1)
        grant(client, 2, 3)
        short_deadline = time.monotonic() + 3
        put(client, b"short", 2)
    # The short lease's deadline passes while no server runs: wait for that moment itself.
    time.sleep(max(0.0, short_deadline - time.monotonic()))
    with K8sSQL(backend) as server, EtcdClient(server.endpoint) as client:
        asked = time.monotonic()
        remaining = time_to_live(client, 1)
        answered = time.monotonic()
        # Neither shortened nor reset: the time left is what the grant and the ask bracket.
        assert 60 - (answered - before_grant) - 1 <= remaining.TTL <= 60 - (asked - after_grant)
        assert list(remaining.keys) == [b"long"]
        eventually(lambda: count(client, b"short") == 0)
        assert time_to_live(client, 2).TTL == -1
        assert count(client, b"long") == 1
        assert keep_alive(client, 1) == 60
