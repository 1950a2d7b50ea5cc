"""The Maintenance, Cluster and Auth handlers over a real store on every backend.

Handlers are called directly (no gRPC): what each answers, and the etcd errors it raises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from twisted.internet.task import Clock

from k8s_sql.etcd.auth import AUTH_UNSUPPORTED, AuthService
from k8s_sql.etcd.cluster import ClusterService
from k8s_sql.etcd.errors import translate
from k8s_sql.etcd.header import Identity
from k8s_sql.etcd.maintenance import EtcdVersion, MaintenanceService, alarm_text
from k8s_sql.etcd.services import register
from k8s_sql.grpc.registry import MethodRegistry
from k8s_sql.grpc.status import GRPCError, StatusCode
from k8s_sql.proto import rpc_pb2
from k8s_sql.store.model import Alarm, AlarmType, MemberRecord, PutRequest

IDENTITY = Identity(cluster_id=11, member_id=22)
GET, ACTIVATE, DEACTIVATE = rpc_pb2.AlarmRequest.GET, rpc_pb2.AlarmRequest.ACTIVATE, rpc_pb2.AlarmRequest.DEACTIVATE
NOSPACE, CORRUPT = rpc_pb2.NOSPACE, rpc_pb2.CORRUPT


@pytest.fixture
def maintenance(store: Any, reactor: Any) -> MaintenanceService:
    return MaintenanceService(store, IDENTITY, "3.6.4", reactor)


def refused(run: Callable[..., Any], handler: Callable[..., Any], request: Any) -> tuple[StatusCode, str]:
    """The status the call ends with, store failures translated as registration does."""
    with pytest.raises(Exception) as raised:
        run(handler, request, None)
    error = translate(raised.value) or raised.value
    assert isinstance(error, GRPCError), error
    return error.code, error.message


def test_status_reports_this_member_as_leader_at_the_current_revision(run: Callable[..., Any], store: Any, maintenance: MaintenanceService) -> None:
    run(store.put, PutRequest(b"k", b"v"))
    status = run(maintenance.status, rpc_pb2.StatusRequest(), None)
    assert status.header.revision == status.raftIndex == status.raftAppliedIndex == 2
    assert (status.header.cluster_id, status.header.member_id, status.leader) == (11, 22, 22)
    assert status.raftTerm == IDENTITY.raft_term
    assert (status.version, status.storageVersion) == ("3.6.4", "3.6.0")
    assert status.HasField("downgradeInfo") and not status.downgradeInfo.enabled
    assert status.dbSize >= status.dbSizeInUse > 0
    assert not status.isLearner and list(status.errors) == []


def test_status_of_an_emulated_35_has_no_storage_version(run: Callable[..., Any], store: Any, reactor: Any) -> None:
    status = run(MaintenanceService(store, IDENTITY, "3.5.21", reactor).status, rpc_pb2.StatusRequest(), None)
    assert status.version == "3.5.21" and status.storageVersion == "" and not status.HasField("downgradeInfo")


@pytest.mark.parametrize("version", ["3.6", "v3.6.4", "", "3.6.4.1"])
def test_the_emulated_version_must_be_major_minor_patch(store: Any, reactor: Any, version: str) -> None:
    with pytest.raises(ValueError):
        MaintenanceService(store, IDENTITY, version, reactor)


def test_alarms_are_raised_listed_reported_and_cleared(run: Callable[..., Any], maintenance: MaintenanceService) -> None:
    def alarm(action: int, member: int = 0, kind: int = 0) -> list[tuple[int, int]]:
        response = run(maintenance.alarm, rpc_pb2.AlarmRequest(action=action, memberID=member, alarm=kind), None)
        assert response.header.member_id == 22
        return [(item.memberID, item.alarm) for item in response.alarms]

    assert alarm(GET) == []
    assert alarm(ACTIVATE, 22, NOSPACE) == [(22, NOSPACE)]
    assert alarm(ACTIVATE, 22, rpc_pb2.NONE) == []
    assert alarm(ACTIVATE, 5, CORRUPT) == [(5, CORRUPT)]
    assert alarm(GET) == [(22, NOSPACE), (5, CORRUPT)]
    assert alarm(GET, 0, CORRUPT) == [(5, CORRUPT)]
    status = run(maintenance.status, rpc_pb2.StatusRequest(), None)
    assert list(status.errors) == ["memberID:22 alarm:NOSPACE ", "memberID:5 alarm:CORRUPT "]
    assert alarm(DEACTIVATE, 5, CORRUPT) == [(5, CORRUPT)]
    assert alarm(DEACTIVATE, 5, CORRUPT) == []
    assert alarm(GET) == [(22, NOSPACE)]


def test_hash_and_hash_kv(run: Callable[..., Any], store: Any, maintenance: MaintenanceService) -> None:
    run(store.put, PutRequest(b"a", b"1"))
    run(store.put, PutRequest(b"b", b"2"))
    hash_kv = run(maintenance.hash_kv, rpc_pb2.HashKVRequest(), None)
    assert (hash_kv.header.revision, hash_kv.hash_revision, hash_kv.compact_revision) == (3, 3, -1)
    assert run(maintenance.hash, rpc_pb2.HashRequest(), None).hash == hash_kv.hash
    at_2 = run(maintenance.hash_kv, rpc_pb2.HashKVRequest(revision=2), None)
    assert (at_2.header.revision, at_2.hash_revision) == (3, 2) and at_2.hash != hash_kv.hash
    assert refused(run, maintenance.hash_kv, rpc_pb2.HashKVRequest(revision=4)) == (
        StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision"
    )
    run(store.compact, 3, False)
    assert refused(run, maintenance.hash_kv, rpc_pb2.HashKVRequest(revision=2)) == (
        StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted"
    )
    assert run(maintenance.hash_kv, rpc_pb2.HashKVRequest(), None).compact_revision == 3


def test_defragment_answers_once_done(run: Callable[..., Any], store: Any, maintenance: MaintenanceService) -> None:
    run(store.put, PutRequest(b"a", b"1"))
    assert run(maintenance.defragment, rpc_pb2.DefragmentRequest(), None).header.revision == 2


def test_move_leader_to_itself_only(run: Callable[..., Any], maintenance: MaintenanceService) -> None:
    assert run(maintenance.move_leader, rpc_pb2.MoveLeaderRequest(targetID=22), None).header.member_id == 22
    assert refused(run, maintenance.move_leader, rpc_pb2.MoveLeaderRequest(targetID=5)) == (
        StatusCode.FAILED_PRECONDITION, "etcdserver: bad leader transferee"
    )


@pytest.mark.parametrize(
    "action, version, outcome",
    [
        (rpc_pb2.DowngradeRequest.VALIDATE, "3.5", "3.6.0"),
        (rpc_pb2.DowngradeRequest.VALIDATE, "3.5.0", "3.6.0"),
        (rpc_pb2.DowngradeRequest.VALIDATE, "3.4", (StatusCode.INVALID_ARGUMENT, "etcdserver: invalid downgrade target version")),
        (rpc_pb2.DowngradeRequest.VALIDATE, "3.6", (StatusCode.INVALID_ARGUMENT, "etcdserver: invalid downgrade target version")),
        (rpc_pb2.DowngradeRequest.VALIDATE, "x", (StatusCode.INVALID_ARGUMENT, "etcdserver: wrong downgrade target version format")),
        (rpc_pb2.DowngradeRequest.ENABLE, "3.4", (StatusCode.INVALID_ARGUMENT, "etcdserver: invalid downgrade target version")),
        (rpc_pb2.DowngradeRequest.CANCEL, "", (StatusCode.FAILED_PRECONDITION, "etcdserver: no inflight downgrade job")),
    ],
)
def test_downgrade_is_validated_as_etcd_does(
    run: Callable[..., Any], maintenance: MaintenanceService, action: int, version: str, outcome: Any
) -> None:
    request = rpc_pb2.DowngradeRequest(action=action, version=version)
    if isinstance(outcome, str):
        assert run(maintenance.downgrade, request, None).version == outcome
    else:
        assert refused(run, maintenance.downgrade, request) == outcome


def test_enabling_a_valid_downgrade_is_unimplemented(run: Callable[..., Any], maintenance: MaintenanceService) -> None:
    code, _ = refused(run, maintenance.downgrade, rpc_pb2.DowngradeRequest(action=rpc_pb2.DowngradeRequest.ENABLE, version="3.5"))
    assert code == StatusCode.UNIMPLEMENTED


def test_member_list_shows_this_member_with_its_client_urls(run: Callable[..., Any], store: Any) -> None:
    urls = ["http://127.0.0.1:1"]
    cluster = ClusterService(store, IDENTITY, "node-a", lambda: urls, list, Clock())
    urls.append("https://127.0.0.1:2")  # known only once the server listens
    response = run(cluster.member_list, rpc_pb2.MemberListRequest(), None)
    assert response.header.revision == 1
    assert [(m.ID, m.name, list(m.clientURLs), list(m.peerURLs), m.isLearner) for m in response.members] == [
        (22, "node-a", ["http://127.0.0.1:1", "https://127.0.0.1:2"], [], False)
    ]


def registered(instance: int, name: str, member_id: int, client: str, peer: str, deadline: float) -> MemberRecord:
    return MemberRecord(instance, name, member_id, (client,), (peer,), "host", "space", instance, deadline)


def test_member_list_shows_the_live_registered_servers_one_member_per_name(run: Callable[..., Any], store: Any) -> None:
    clock = Clock()
    clock.advance(100)
    cluster = ClusterService(store, IDENTITY, "node-a", lambda: ["http://a:1"], lambda: ["http://a:2"], clock)
    for record in (
        registered(1, "node-a", 22, "http://a:1", "http://a:2", 110),  # this server, as registered
        registered(2, "node-b", 7, "http://b:1", "http://b:2", 110),
        registered(3, "node-b", 7, "http://b:1", "http://b:3", 110),  # a worker of node-b
        registered(4, "node-c", 99, "http://c:1", "http://c:2", 99),  # expired
    ):
        run(store.register_member, record, 90)
    members = run(cluster.member_list, rpc_pb2.MemberListRequest(), None).members
    assert [(m.ID, m.name, list(m.clientURLs), list(m.peerURLs)) for m in members] == [
        (7, "node-b", ["http://b:1"], ["http://b:2", "http://b:3"]),
        (22, "node-a", ["http://a:1"], ["http://a:2"]),
    ]
    not_found = (StatusCode.NOT_FOUND, "etcdserver: member not found")
    assert refused(run, cluster.member_remove, rpc_pb2.MemberRemoveRequest(ID=99)) == not_found
    code, message = refused(run, cluster.member_remove, rpc_pb2.MemberRemoveRequest(ID=7))
    assert code == StatusCode.UNIMPLEMENTED and "sharing the database" in message
    assert refused(run, cluster.member_promote, rpc_pb2.MemberPromoteRequest(ID=7)) == (
        StatusCode.FAILED_PRECONDITION, "etcdserver: can only promote a learner member"
    )


def test_membership_changes_are_refused(run: Callable[..., Any], store: Any) -> None:
    cluster = ClusterService(store, IDENTITY, "default", list, list, Clock())
    not_found = (StatusCode.NOT_FOUND, "etcdserver: member not found")
    assert refused(run, cluster.member_remove, rpc_pb2.MemberRemoveRequest(ID=5)) == not_found
    assert refused(run, cluster.member_update, rpc_pb2.MemberUpdateRequest(ID=5)) == not_found
    assert refused(run, cluster.member_promote, rpc_pb2.MemberPromoteRequest(ID=5)) == not_found
    assert refused(run, cluster.member_promote, rpc_pb2.MemberPromoteRequest(ID=22)) == (
        StatusCode.FAILED_PRECONDITION, "etcdserver: can only promote a learner member"
    )
    for handler, request in [
        (cluster.member_add, rpc_pb2.MemberAddRequest(peerURLs=["http://127.0.0.1:3"])),
        (cluster.member_remove, rpc_pb2.MemberRemoveRequest(ID=22)),
        (cluster.member_update, rpc_pb2.MemberUpdateRequest(ID=22)),
    ]:
        code, message = refused(run, handler, request)
        assert code == StatusCode.UNIMPLEMENTED and "sharing the database" in message


def test_auth_is_disabled(run: Callable[..., Any], store: Any) -> None:
    auth = AuthService(store, IDENTITY)
    status = run(auth.auth_status, rpc_pb2.AuthStatusRequest(), None)
    assert (status.enabled, status.authRevision, status.header.revision) == (False, 1, 1)
    assert refused(run, auth.authenticate, rpc_pb2.AuthenticateRequest(name="root", password="x")) == (
        StatusCode.FAILED_PRECONDITION, "etcdserver: authentication is not enabled"
    )
    assert run(auth.auth_disable, rpc_pb2.AuthDisableRequest(), None).header.member_id == 22
    assert list(run(auth.user_list, rpc_pb2.AuthUserListRequest(), None).users) == []
    assert list(run(auth.role_list, rpc_pb2.AuthRoleListRequest(), None).roles) == []
    assert refused(run, auth.refuse, rpc_pb2.AuthEnableRequest()) == (StatusCode.UNIMPLEMENTED, AUTH_UNSUPPORTED)


def test_every_method_of_the_three_services_is_registered(store: Any, reactor: Any) -> None:
    registry = MethodRegistry()
    register(
        registry,
        MaintenanceService(store, IDENTITY, "3.6.4", reactor),
        ClusterService(store, IDENTITY, "default", list, list, reactor),
        AuthService(store, IDENTITY),
    )
    for name in ("Maintenance", "Cluster", "Auth"):
        for method in rpc_pb2.DESCRIPTOR.services_by_name[name].methods:
            assert registry.lookup(f"/etcdserverpb.{name}/{method.name}").path.endswith(method.name)


@pytest.mark.parametrize(
    "text, parsed",
    [("3.6.4", (3, 6, 4)), ("3.5", (3, 5, 0)), ("3.4.0-rc.1", (3, 4, 0)), ("three", None), ("3", None)],
)
def test_etcd_versions_parse_as_etcd_reads_them(text: str, parsed: Any) -> None:
    assert EtcdVersion.parse(text) == parsed


def test_alarm_text_is_etcds() -> None:
    assert alarm_text(Alarm(2**64 - 1, AlarmType.CORRUPT)) == "memberID:18446744073709551615 alarm:CORRUPT "
