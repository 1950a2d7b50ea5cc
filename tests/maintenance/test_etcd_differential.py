"""Maintenance, Cluster and Auth against a real etcd 3.5: the same requests, the same answers.

k8s-sql runs emulating etcd 3.5.1, the version of the etcd it is compared with.  Answers
that name the server itself (sizes, raft indexes, URLs, member IDs) are compared by shape.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from k8s_sql.proto import rpc_pb2
from tests.differential import answer, strip_identity
from tests.etcdclient import EtcdClient
from tests.processes import Etcd, K8sSQL

Alarm = rpc_pb2.AlarmRequest
Downgrade = rpc_pb2.DowngradeRequest

STEPS: list[tuple[str, str, Message]] = [
    ("KV", "Put", rpc_pb2.PutRequest(key=b"a", value=b"1")),
    ("KV", "Put", rpc_pb2.PutRequest(key=b"b", value=b"2")),
    ("KV", "Txn", rpc_pb2.TxnRequest(success=[
        rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"c", value=b"3")),
        rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=b"a")),
    ])),
    ("KV", "Put", rpc_pb2.PutRequest(key=b"b", value=b"")),
    ("Maintenance", "HashKV", rpc_pb2.HashKVRequest()),
    ("Maintenance", "HashKV", rpc_pb2.HashKVRequest(revision=2)),
    ("Maintenance", "HashKV", rpc_pb2.HashKVRequest(revision=99)),
    ("Maintenance", "Alarm", Alarm(action=Alarm.GET)),
    ("Maintenance", "Alarm", Alarm(action=Alarm.ACTIVATE, memberID=12345, alarm=rpc_pb2.CORRUPT)),
    ("Maintenance", "Alarm", Alarm(action=Alarm.ACTIVATE, memberID=12345, alarm=rpc_pb2.NONE)),
    ("Maintenance", "Alarm", Alarm(action=Alarm.ACTIVATE, memberID=777, alarm=rpc_pb2.NOSPACE)),
    ("Maintenance", "Alarm", Alarm(action=Alarm.GET)),
    ("Maintenance", "Alarm", Alarm(action=Alarm.GET, alarm=rpc_pb2.CORRUPT)),
    ("Maintenance", "Alarm", Alarm(action=Alarm.DEACTIVATE, memberID=999, alarm=rpc_pb2.NOSPACE)),
    ("Maintenance", "Alarm", Alarm(action=Alarm.DEACTIVATE, memberID=12345, alarm=rpc_pb2.CORRUPT)),
    ("Maintenance", "Alarm", Alarm(action=Alarm.DEACTIVATE, memberID=777, alarm=rpc_pb2.NOSPACE)),
    ("Maintenance", "Alarm", Alarm(action=Alarm.GET)),
    ("Maintenance", "MoveLeader", rpc_pb2.MoveLeaderRequest(targetID=5)),
    ("Maintenance", "Downgrade", Downgrade(action=Downgrade.VALIDATE, version="3.4")),
    ("Maintenance", "Downgrade", Downgrade(action=Downgrade.VALIDATE, version="3.4.0")),
    ("Maintenance", "Downgrade", Downgrade(action=Downgrade.VALIDATE, version="3.5")),
    ("Maintenance", "Downgrade", Downgrade(action=Downgrade.VALIDATE, version="three")),
    ("Maintenance", "Downgrade", Downgrade(action=Downgrade.ENABLE, version="3.3")),
    ("Maintenance", "Downgrade", Downgrade(action=Downgrade.CANCEL)),
    ("Cluster", "MemberPromote", rpc_pb2.MemberPromoteRequest(ID=5)),
    ("Auth", "AuthStatus", rpc_pb2.AuthStatusRequest()),
    ("Auth", "Authenticate", rpc_pb2.AuthenticateRequest(name="root", password="secret")),
    ("Auth", "AuthDisable", rpc_pb2.AuthDisableRequest()),
    ("Auth", "UserList", rpc_pb2.AuthUserListRequest()),
    ("KV", "Compact", rpc_pb2.CompactionRequest(revision=4, physical=True)),
    ("Maintenance", "HashKV", rpc_pb2.HashKVRequest()),
    ("Maintenance", "HashKV", rpc_pb2.HashKVRequest(revision=3)),
    ("KV", "DeleteRange", rpc_pb2.DeleteRangeRequest(key=b"\0", range_end=b"\0")),
    ("KV", "Compact", rpc_pb2.CompactionRequest(revision=6, physical=True)),
    ("Maintenance", "HashKV", rpc_pb2.HashKVRequest()),
]


def session(endpoint: str) -> dict[str, Any]:
    """Run the steps, then read what names the server itself."""
    with EtcdClient(endpoint) as client:
        answers = [answer(getattr(getattr(client, service), method), request) for service, method, request in STEPS]
        status = client.Maintenance.Status(rpc_pb2.StatusRequest(), timeout=10)
        members = client.Cluster.MemberList(rpc_pb2.MemberListRequest(), timeout=10)
        own = [
            answer(client.Maintenance.MoveLeader, rpc_pb2.MoveLeaderRequest(targetID=status.leader)),
            answer(client.Cluster.MemberPromote, rpc_pb2.MemberPromoteRequest(ID=status.leader)),
        ]
    return {"answers": answers, "status": status, "members": members, "own": own}


def test_the_same_requests_get_the_same_answers(backend: str) -> None:
    with Etcd() as etcd:
        expected = session(etcd.endpoint)
        etcd_endpoint = etcd.endpoint
    with K8sSQL(backend, "--emulated-etcd-version", "3.5.1") as server:
        got = session(server.endpoint)

    for index, (want, have, (service, method, request)) in enumerate(zip(expected["answers"], got["answers"], STEPS)):
        if "hashRevision" in have:  # etcd 3.5.1 predates the field
            assert have.pop("hashRevision") == str(request.revision or have["header"]["revision"])
        for alarms in (want, have):  # etcd lists alarms in Go map order
            alarms.get("alarms", []).sort(key=lambda alarm: (alarm["alarm"], alarm["memberID"]))
        assert have == want, f"step {index}: {service}.{method}({MessageToDict(request)})"

    for result, endpoint in ((expected, etcd_endpoint), (got, server.endpoint)):
        status, members = result["status"], result["members"]
        assert status.leader == status.header.member_id == members.header.member_id
        assert status.raftAppliedIndex >= status.header.revision and status.dbSize >= status.dbSizeInUse > 0
        [member] = members.members
        assert (member.ID, member.name, list(member.clientURLs)) == (status.leader, "default", [f"http://{endpoint}"])
    assert set(MessageToDict(got["status"])) == set(MessageToDict(expected["status"]))
    assert got["status"].version == expected["status"].version == "3.5.1"

    # Moving leadership to oneself succeeds (etcd answers without a header); promoting oneself fails.
    assert [strip_identity(own) for own in got["own"]][1] == expected["own"][1]
    assert "error" not in got["own"][0] and "error" not in expected["own"][0]
