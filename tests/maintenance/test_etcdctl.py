"""etcdctl's maintenance, member, alarm and auth commands against k8s-sql, on every backend,
and two servers sharing one database."""

from __future__ import annotations

import json
import re
from typing import Any

from k8s_sql.proto import rpc_pb2
from tests.etcdclient import EtcdClient
from tests.processes import K8sSQL, etcdctl, etcdctl_json

#: etcd 3.5.1's HashKV after put a=1, put b=2, del a; then once compacted at revision 3.
ETCD_HASH = 1562576432
ETCD_HASH_COMPACTED = 776148148


def write_history(endpoint: str) -> None:
    etcdctl(endpoint, "put", "a", "1")
    etcdctl(endpoint, "put", "b", "2")
    etcdctl(endpoint, "del", "a")


def raise_alarm(endpoint: str, member: int, alarm: int) -> None:
    with EtcdClient(endpoint) as client:
        request = rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.ACTIVATE, memberID=member, alarm=alarm)
        client.Maintenance.Alarm(request, timeout=10)


def error_of(result: Any) -> str:
    return next(line for line in result.stderr.splitlines() if line.startswith("Error:"))


def test_endpoint_status_hashkv_member_list_and_compaction(backend: str) -> None:
    with K8sSQL(backend) as server:
        write_history(server.endpoint)
        [status] = etcdctl_json(server.endpoint, "endpoint", "status")
        status = status["Status"]
        member = status["header"]["member_id"]
        assert status["leader"] == member and status["version"] == "3.6.15"
        assert status["raftIndex"] == status["raftAppliedIndex"] == status["header"]["revision"] == 4
        assert status["dbSize"] >= status["dbSizeInUse"] > 0

        [hashed] = etcdctl_json(server.endpoint, "endpoint", "hashkv")
        assert (hashed["HashKV"]["hash"], hashed["HashKV"]["compact_revision"]) == (ETCD_HASH, -1)

        members = etcdctl_json(server.endpoint, "member", "list")["members"]
        assert members == [{"ID": member, "name": "default", "clientURLs": [f"http://{server.endpoint}"]}]

        assert etcdctl(server.endpoint, "compaction", "3").stdout.strip() == "compacted revision 3"
        [hashed] = etcdctl_json(server.endpoint, "endpoint", "hashkv")
        assert (hashed["HashKV"]["hash"], hashed["HashKV"]["compact_revision"]) == (ETCD_HASH_COMPACTED, 3)

        assert etcdctl(server.endpoint, "defrag").stdout.strip() == f"Finished defragmenting etcd member[{server.endpoint}]"
        assert etcdctl(server.endpoint, "get", "b", "--print-value-only").stdout.strip() == "2"


def test_alarms_list_disarm_and_health(backend: str) -> None:
    with K8sSQL(backend) as server:
        assert etcdctl_json(server.endpoint, "endpoint", "health")[0]["health"] is True
        assert "alarms" not in etcdctl_json(server.endpoint, "alarm", "list")
        member = etcdctl_json(server.endpoint, "endpoint", "status")[0]["Status"]["leader"]
        raise_alarm(server.endpoint, member, rpc_pb2.NOSPACE)
        assert etcdctl(server.endpoint, "alarm", "list").stdout == f"memberID:{member} alarm:NOSPACE \n"

        unhealthy = etcdctl(server.endpoint, "-w", "json", "endpoint", "health", check=False)
        assert unhealthy.returncode != 0
        assert json.loads(unhealthy.stdout)[0]["error"] == "Active Alarm(s): NOSPACE "

        disarmed = etcdctl_json(server.endpoint, "alarm", "disarm")
        assert disarmed["alarms"] == [{"memberID": member, "alarm": rpc_pb2.NOSPACE}]
        assert "alarms" not in etcdctl_json(server.endpoint, "alarm", "list")
        assert etcdctl_json(server.endpoint, "endpoint", "health")[0]["health"] is True


def test_refused_commands_say_why(backend: str) -> None:
    with K8sSQL(backend) as server:
        member = etcdctl_json(server.endpoint, "member", "list")["members"][0]["ID"]
        promote = etcdctl(server.endpoint, "member", "promote", f"{member:x}", check=False)
        assert "can only promote a learner member" in error_of(promote)
        remove = etcdctl(server.endpoint, "member", "remove", "5", check=False)
        assert "etcdserver: member not found" in error_of(remove)
        add = etcdctl(server.endpoint, "member", "add", "other", "--peer-urls", "http://127.0.0.1:1", check=False)
        assert re.search(r"code = Unimplemented desc = k8s-sql members are not raft members", error_of(add))

        assert etcdctl(server.endpoint, "move-leader", f"{member:x}").returncode == 0
        assert "bad leader transferee" in error_of(etcdctl(server.endpoint, "move-leader", "5", check=False))

        assert etcdctl(server.endpoint, "auth", "status").stdout == "Authentication Status: false\nAuthRevision: 1\n"
        with_user = etcdctl(server.endpoint, "--user", "root:secret", "put", "k", "v")
        assert with_user.stdout.strip() == "OK"  # clientv3 goes on without a token when auth is disabled
        assert "etcd authentication" in error_of(etcdctl(server.endpoint, "user", "add", "bob:pw", check=False))


def test_two_servers_sharing_a_database(backend: str) -> None:
    with K8sSQL(backend, "--name", "one") as one, K8sSQL(backend, "--name", "two") as two:
        write_history(one.endpoint)
        hashes = [etcdctl_json(server.endpoint, "endpoint", "hashkv")[0]["HashKV"] for server in (one, two)]
        assert hashes[0]["hash"] == hashes[1]["hash"] == ETCD_HASH
        assert hashes[0]["header"]["revision"] == hashes[1]["header"]["revision"] == 4

        ids = {name: etcdctl_json(server.endpoint, "endpoint", "status")[0]["Status"]["leader"]
               for server, name in ((one, "one"), (two, "two"))}
        for server in (one, two):  # each lists both, and leads itself
            members = etcdctl_json(server.endpoint, "member", "list")["members"]
            assert sorted((m["ID"], m["name"]) for m in members) == sorted((ids[n], n) for n in ("one", "two"))

        member_one = etcdctl_json(one.endpoint, "endpoint", "status")[0]["Status"]["leader"]
        raise_alarm(one.endpoint, member_one, rpc_pb2.NOSPACE)
        assert etcdctl(two.endpoint, "alarm", "list").stdout == f"memberID:{member_one} alarm:NOSPACE \n"
        etcdctl(two.endpoint, "alarm", "disarm")
        assert etcdctl(one.endpoint, "alarm", "list").stdout == ""
