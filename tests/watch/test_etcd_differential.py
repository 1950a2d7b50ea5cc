"""One scripted watch session gives the same responses from a real etcd 3.5 and k8s-sql.

Each step is a KV write or a watch request, with the number of watch responses it must
bring; responses are compared as data with the header's cluster, member and raft term
left out.  Two deliberate differences: etcd reports revision 0 in the header of a watch
cancelled by compaction, where k8s-sql keeps every header revision non-zero; that header
revision is compared only for being non-zero.  And etcd 3.5.1 drops a deletion at the
compaction revision from a watch starting there (etcd-io/etcd#18089, fixed in 3.5.15):
k8s-sql delivers it, as etcd does since, which the last step checks.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from google.protobuf.json_format import MessageToDict

from k8s_sql.proto import rpc_pb2
from tests.differential import strip_identity
from tests.etcdclient import EtcdClient
from tests.processes import Etcd
from tests.watch.servers import Run, Server, WatchSession

#: (action, argument, responses expected on the watch stream)
SCRIPT: list[tuple[str, Any, int]] = [
    ("put", (b"a", b"1"), 0),
    ("put", (b"a", b"2"), 0),
    ("put", (b"b", b"1"), 0),
    ("watch", dict(key=b"a"), 1),
    ("watch", dict(key=b"b", watch_id=5, filters=[rpc_pb2.WatchCreateRequest.NOPUT]), 1),
    ("watch", dict(key=b"c", watch_id=5), 1),
    ("watch", dict(key=b"z", range_end=b"a"), 1),
    ("watch", dict(key=b"a", start_revision=2, prev_kv=True), 2),
    ("cancel", 0, 1),
    ("cancel", 42, 0),
    ("watch", dict(key=b"d", range_end=b"\x00", start_revision=9), 1),
    ("put", (b"a", b"3"), 1),
    ("put", (b"b", b"2"), 0),
    ("delete", b"b", 1),
    ("put", (b"e", b"1"), 0),
    ("delete", b"a", 1),
    ("put", (b"f", b"1"), 1),
    ("compact", 6, 0),
    ("watch", dict(key=b"a", start_revision=3), 2),
    ("watch", dict(key=b"a", start_revision=7), 2),
    # Watches from the compaction revision itself (c and bb have no watch yet): etcd keeps
    # the revision's puts and deletions, without prev_kv (3.5.1 drops the deletions).
    ("put", (b"c", b"1"), 0),
    ("put", (b"c", b"2"), 0),
    ("put", (b"bb", b"1"), 0),
    ("delete", b"bb", 0),
    ("compact", 12, 0),
    ("watch", dict(key=b"c", start_revision=12, prev_kv=True), 2),
    ("compact", 14, 0),
    ("watch", dict(key=b"bb", start_revision=14, prev_kv=True), 1),
    ("put", (b"bb", b"2"), 1),
]


def play(endpoint: str) -> list[Any]:
    """Run the script against ``endpoint``; the watch responses each step brought."""
    answers: list[Any] = []
    with EtcdClient(endpoint) as client:
        session = WatchSession(client)
        for action, argument, expected in SCRIPT:
            if action == "put":
                client.KV.Put(rpc_pb2.PutRequest(key=argument[0], value=argument[1]), timeout=10)
            elif action == "delete":
                client.KV.DeleteRange(rpc_pb2.DeleteRangeRequest(key=argument), timeout=10)
            elif action == "compact":
                client.KV.Compact(rpc_pb2.CompactionRequest(revision=argument, physical=True), timeout=10)
            elif action == "watch":
                session.create(**argument)
            else:
                session.cancel(argument)
            answers.append([normalized(session.next()) for _ in range(expected)])
        session.half_close()
        session.responses.cancel()
    return answers


def normalized(response: rpc_pb2.WatchResponse) -> Any:
    data = strip_identity(MessageToDict(response))
    if response.compact_revision:
        assert response.header.revision != 0 or "revision" not in data["header"]
        data["header"].pop("revision", None)
    return data


@pytest.fixture(scope="module")
def etcd_answers() -> Iterator[list[Any]]:
    with Etcd() as etcd:
        yield play(etcd.endpoint)


def test_same_watch_responses_as_etcd(etcd_answers: list[Any], run: Run, reactor: Any, store: Any) -> None:
    server = Server(run, reactor, store)
    try:
        answers = play(server.endpoint)
    finally:
        server.stop()
    *same, (last_etcd, last) = zip(etcd_answers, answers)
    for (action, argument, _), (expected, got) in zip(SCRIPT, same):
        assert got == expected, f"{action} {argument}:\n  etcd:    {expected}\n  k8s-sql: {got}"
    # The deletion of bb at the compaction revision 14, which etcd 3.5.1 skips for the put at 15.
    [etcd_event], [event] = [answer[0]["events"] for answer in (last_etcd, last)]
    assert (etcd_event.get("type"), etcd_event["kv"]["modRevision"]) == (None, "15")
    assert event == {"type": "DELETE", "kv": {"key": "YmI=", "modRevision": "14"}}
