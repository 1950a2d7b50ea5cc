"""Lease differential tests: the same lease and key requests get the same answers from a real
etcd 3.5 and from k8s-sql, through one grpcio client; etcd answers once per session.

Lease IDs are explicit so that answers can be compared; answers etcd orders arbitrarily
(the keys of a lease, the lease list) are sorted before comparing.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator, Sequence

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from k8s_sql.proto import rpc_pb2
from tests.differential import answer, strip_identity
from tests.etcdclient import EtcdClient
from tests.processes import Etcd, K8sSQL

#: One step: a service, a method and its request (a list of requests for a bidi stream).
Step = tuple[str, str, Any]


def grant(lease_id: int, ttl: int) -> Step:
    return ("Lease", "LeaseGrant", rpc_pb2.LeaseGrantRequest(ID=lease_id, TTL=ttl))


def revoke(lease_id: int) -> Step:
    return ("Lease", "LeaseRevoke", rpc_pb2.LeaseRevokeRequest(ID=lease_id))


def time_to_live(lease_id: int, keys: bool = True) -> Step:
    return ("Lease", "LeaseTimeToLive", rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id, keys=keys))


def put(key: bytes, lease: int = 0) -> Step:
    return ("KV", "Put", rpc_pb2.PutRequest(key=key, value=b"v-" + key, lease=lease))


def everything() -> Step:
    return ("KV", "Range", rpc_pb2.RangeRequest(key=b"\0", range_end=b"\0"))


def keep_alive(*lease_ids: int) -> Step:
    return ("Lease", "LeaseKeepAlive", [rpc_pb2.LeaseKeepAliveRequest(ID=i) for i in lease_ids])


def txn_put(key: bytes, lease: int) -> Step:
    operation = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=b"t", lease=lease))
    return ("KV", "Txn", rpc_pb2.TxnRequest(success=[operation]))


LIFECYCLE: list[Step] = [
    grant(1000, 100),
    grant(1000, 100),
    grant(1001, 9_000_000_001),
    grant(1000, 9_000_000_001),
    grant(1002, 0),
    grant(1003, -5),
    grant(-7, 1),
    revoke(1002),
    revoke(1003),
    revoke(-7),
    grant(1004, 9_000_000_000),
    put(b"b", lease=1000),
    put(b"a", lease=1000),
    put(b"c"),
    put(b"d", lease=1004),
    put(b"x", lease=999),
    txn_put(b"y", lease=999),
    txn_put(b"e", lease=1004),
    time_to_live(1000),
    time_to_live(1004, keys=False),
    time_to_live(999),
    time_to_live(0),
    ("Lease", "LeaseLeases", rpc_pb2.LeaseLeasesRequest()),
    put(b"a"),
    time_to_live(1000),
    keep_alive(1004, 999, 0, 1000),
    revoke(1000),
    everything(),
    revoke(1000),
    revoke(0),
    time_to_live(1000),
    grant(1005, 100),
    revoke(1005),
    everything(),
]


def normalise(value: Any) -> Any:
    """Sort the lists etcd returns in no particular order."""
    if isinstance(value, dict):
        value = {key: normalise(item) for key, item in value.items()}
        for field in ("keys", "leases"):
            if isinstance(value.get(field), list):
                value[field] = sorted(value[field], key=repr)
    return value


def run(client: EtcdClient, steps: Sequence[Step]) -> list[Any]:
    """The answers to ``steps``, normalised for comparison."""
    answers = []
    for service, method, request in steps:
        call: Callable[..., Any] = getattr(getattr(client, service), method)
        if isinstance(request, list):
            responses: Iterator[Message] = call(iter(request), timeout=30)
            answers.append([strip_identity(MessageToDict(r)) for r in responses])
        else:
            answers.append(normalise(answer(call, request)))
    return answers


def compare(expected: list[Any], got: list[Any], steps: Sequence[Step]) -> None:
    for index, (want, have, (service, method, request)) in enumerate(zip(expected, got, steps)):
        assert have == want, f"step {index}: {service}.{method}({request}) answered\n  etcd:    {want}\n  k8s-sql: {have}"


_etcd_lifecycle: list[Any] = []


def test_lease_lifecycle_answers_as_etcd(backend: str) -> None:
    if not _etcd_lifecycle:
        with Etcd() as etcd, EtcdClient(etcd.endpoint) as client:
            _etcd_lifecycle.extend(run(client, LIFECYCLE))
    with K8sSQL(backend) as server, EtcdClient(server.endpoint) as client:
        got = run(client, LIFECYCLE)
    compare(_etcd_lifecycle, got, LIFECYCLE)


def expiry_events(client: EtcdClient) -> list[Any]:
    """Grant a 2 s lease, attach two keys, wait for it to expire; the watch events from the start."""
    client.Lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(ID=77, TTL=2), timeout=10)
    for key, lease in ((b"k2", 77), (b"k1", 77), (b"k3", 0)):
        client.KV.Put(rpc_pb2.PutRequest(key=key, value=b"v", lease=lease), timeout=10)
    deadline = time.monotonic() + 20
    while client.Lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=77), timeout=10).TTL != -1:
        assert time.monotonic() < deadline, "the lease never expired"
        time.sleep(0.1)
    create = rpc_pb2.WatchRequest(
        create_request=rpc_pb2.WatchCreateRequest(key=b"k", range_end=b"l", start_revision=1, prev_kv=True)
    )
    events: list[Any] = []
    stream = client.Watch.Watch(iter([create]), timeout=20)
    for response in stream:
        events.extend(MessageToDict(event) for event in response.events)
        if len(events) == 5:
            stream.cancel()
            break
    return events


_etcd_expiry: list[Any] = []


def test_expiry_deletes_the_keys_in_one_revision_as_etcd(backend: str) -> None:
    if not _etcd_expiry:
        with Etcd() as etcd, EtcdClient(etcd.endpoint) as client:
            _etcd_expiry.extend(expiry_events(client))
    with K8sSQL(backend) as server, EtcdClient(server.endpoint) as client:
        got = expiry_events(client)
    assert got == _etcd_expiry
    deletes = [event for event in got if event.get("type") == "DELETE"]
    assert [event["kv"]["key"] for event in deletes] == ["azE=", "azI="]  # k1, k2: key order
    assert len({event["kv"]["modRevision"] for event in deletes}) == 1
    assert all("prevKv" in event for event in deletes)

