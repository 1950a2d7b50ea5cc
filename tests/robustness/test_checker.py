"""The checker accepts a correct history and catches each kind of planted violation."""

from __future__ import annotations

import copy
from typing import Any

from k8s_sql.proto import kv_pb2, rpc_pb2
from tests.robustness.checker import check
from tests.robustness.history import History, Operation, WatchStream


class Server:
    """A tiny etcd: applies writes in revision order and says what a watch would see."""

    def __init__(self) -> None:
        self.revision = 1
        self.state: dict[bytes, kv_pb2.KeyValue] = {}
        self.events: dict[int, list[kv_pb2.Event]] = {}

    def put(self, key: bytes, value: bytes) -> int:
        self.revision += 1
        prev = self.state.get(key)
        kv = kv_pb2.KeyValue(
            key=key, value=value, mod_revision=self.revision,
            create_revision=prev.create_revision if prev else self.revision, version=prev.version + 1 if prev else 1,
        )
        event = kv_pb2.Event(type=kv_pb2.Event.PUT, kv=kv)
        if prev:
            event.prev_kv.CopyFrom(prev)
        self.state[key] = kv
        self.events[self.revision] = [event]
        return self.revision

    def delete(self, key: bytes) -> int:
        self.revision += 1
        event = kv_pb2.Event(type=kv_pb2.Event.DELETE, kv=kv_pb2.KeyValue(key=key, mod_revision=self.revision))
        event.prev_kv.CopyFrom(self.state.pop(key))
        self.events[self.revision] = [event]
        return self.revision

    def range(self, key: bytes) -> rpc_pb2.RangeResponse:
        kvs = [self.state[key]] if key in self.state else []
        return rpc_pb2.RangeResponse(header=rpc_pb2.ResponseHeader(revision=self.revision), kvs=kvs, count=len(kvs))

    def watch(self, client: int, key: bytes, start: int, *, log: bool = False) -> WatchStream:
        """A watch that received every event from ``start`` on, one response per revision."""
        request = rpc_pb2.WatchCreateRequest(key=key, start_revision=start, prev_kv=True)
        if log:
            request.range_end = b"\0"
        stream = WatchStream(client, request, log=log)
        stream.responses.append((0.0, rpc_pb2.WatchResponse(created=True, header=rpc_pb2.ResponseHeader(revision=1))))
        for revision in range(start, self.revision + 1):
            events = [e for e in self.events.get(revision, []) if log or e.kv.key == key]
            if events:
                stream.responses.append((float(revision), watch_response(revision, events)))
        return stream


def watch_response(revision: int, events: list[kv_pb2.Event]) -> rpc_pb2.WatchResponse:
    return rpc_pb2.WatchResponse(header=rpc_pb2.ResponseHeader(revision=revision), events=events)


def progress(revision: int) -> rpc_pb2.WatchResponse:
    return rpc_pb2.WatchResponse(watch_id=-1, header=rpc_pb2.ResponseHeader(revision=revision))


def put(server: Server, client: int, key: bytes, value: bytes, call: float, returned: float | None) -> Operation:
    revision = server.put(key, value)
    response = rpc_pb2.PutResponse(header=rpc_pb2.ResponseHeader(revision=revision))
    return Operation(client, "Put", rpc_pb2.PutRequest(key=key, value=value), call, returned, response)


def history() -> tuple[History, Server]:
    """Two clients writing a and b, a read, a delete, a txn, an unknown outcome; a watch on a."""
    server = Server()
    ops = [
        put(server, 1, b"a", b"a1", 0.0, 1.0),  # revision 2
        put(server, 2, b"b", b"b1", 1.5, 2.0),  # 3
        put(server, 1, b"a", b"a2", 2.5, 3.0),  # 4
    ]
    ops.append(Operation(2, "Range", rpc_pb2.RangeRequest(key=b"a"), 3.5, 4.0, server.range(b"a")))
    revision = server.delete(b"b")  # 5
    ops.append(Operation(2, "DeleteRange", rpc_pb2.DeleteRangeRequest(key=b"b"), 4.5, 5.0, rpc_pb2.DeleteRangeResponse(
        header=rpc_pb2.ResponseHeader(revision=revision), deleted=1)))
    txn = rpc_pb2.TxnRequest(
        compare=[rpc_pb2.Compare(key=b"a", target=rpc_pb2.Compare.MOD, result=rpc_pb2.Compare.EQUAL, mod_revision=4)],
        success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"a", value=b"a3"))],
        failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"a"))],
    )
    revision = server.put(b"a", b"a3")  # 6
    ops.append(Operation(1, "Txn", txn, 5.5, 6.0, rpc_pb2.TxnResponse(
        header=rpc_pb2.ResponseHeader(revision=revision), succeeded=True)))
    # A put whose answer was lost in a fault: it did happen (revision 7)...
    unknown = put(server, 2, b"c", b"c1", 6.5, None)
    unknown.response = None
    ops.append(unknown)
    # ...and one that did not.
    ops.append(Operation(1, "Put", rpc_pb2.PutRequest(key=b"d", value=b"never"), 6.5, 7.0, error="UNAVAILABLE"))
    watch = server.watch(3, b"a", 2)
    watch.responses.append((8.0, progress(server.revision)))
    final = rpc_pb2.RangeResponse(header=rpc_pb2.ResponseHeader(revision=server.revision),
                                  kvs=[server.state[k] for k in sorted(server.state)], count=len(server.state))
    return History(ops, [server.watch(0, b"\0", 1, log=True), watch], final), server


def violations(planted: History) -> list[str]:
    return check(planted).violations


def test_a_correct_history_passes() -> None:
    report = check(history()[0])
    assert report.violations == []
    assert report.counts["revisions"] == 7
    assert report.counts["writes checked"] == 6  # five acknowledged, one resolved from the log
    assert report.counts["watch events checked"] == 6 + 3
    assert report.counts["progress notifications"] == 1


def test_a_lost_write_is_caught() -> None:
    planted, _ = history()
    log = planted.watches[0]
    log.responses = [(t, r) for t, r in log.responses if r.header.revision != 3 or r.created]
    found = violations(planted)
    assert any("lost write" in v and "revision 3" in v for v in found), found


def test_a_reordered_event_is_caught() -> None:
    planted, _ = history()
    watch = planted.watches[1]
    watch.responses[1], watch.responses[2] = watch.responses[2], watch.responses[1]
    found = violations(planted)
    assert any("Ordered" in v for v in found), found


def test_a_progress_notification_ahead_of_an_event_is_caught() -> None:
    planted, _ = history()
    watch = planted.watches[1]
    watch.responses.insert(2, (2.5, progress(4)))  # before the event of revision 4 reached it
    found = violations(planted)
    assert any("Bookmarkable" in v for v in found), found


def test_a_stale_read_is_caught() -> None:
    planted, server = history()
    read = planted.operations[3]
    # Called after a2 was acknowledged at revision 4, it answers a1 from revision 3.
    stale = rpc_pb2.RangeResponse(header=rpc_pb2.ResponseHeader(revision=3), count=1)
    stale.kvs.add().CopyFrom(server.events[2][0].kv)
    read.response = stale
    found = violations(planted)
    assert any("real time" in v for v in found), found


def test_a_duplicate_event_is_caught() -> None:
    planted, _ = history()
    watch = planted.watches[1]
    watch.responses.insert(2, copy.deepcopy(watch.responses[1]))
    found = violations(planted)
    assert any("Unique" in v for v in found), found


def test_a_missing_event_and_a_wrong_prev_kv_are_caught() -> None:
    planted, _ = history()
    watch = planted.watches[1]
    del watch.responses[2]
    assert any("Reliable" in v for v in violations(planted))
    planted, _ = history()
    event = planted.watches[1].responses[2][1].events[0]
    event.prev_kv.value = b"wrong"
    assert any("prev_kv" in v for v in violations(planted))


def test_a_wrong_create_flag_is_caught() -> None:
    planted, _ = history()
    for stream in planted.watches:
        for _, response in stream.responses:
            for event in response.events:
                if event.kv.mod_revision == 4:  # a modification, sent as a create
                    event.kv.create_revision = 4
                    event.kv.version = 1
    found = violations(planted)
    assert any("create" in v for v in found), found


def test_a_write_nobody_made_and_a_failed_write_that_happened_are_caught() -> None:
    planted, server = history()
    revision = server.put(b"x", b"phantom")
    planted.watches[0].responses.append((9.0, watch_response(revision, server.events[revision])))
    planted.final = None
    assert any("explained by no operation" in v for v in violations(planted))
    planted, server = history()
    revision = server.put(b"d", b"never")  # the put that failed with UNAVAILABLE... was definite? no: unknown
    planted.operations[-1].error = "NOT_FOUND"  # a definite failure
    planted.watches[0].responses.append((9.0, watch_response(revision, server.events[revision])))
    planted.final = None
    assert any("failed with NOT_FOUND" in v for v in violations(planted))


def test_a_compare_that_should_have_failed_is_caught() -> None:
    planted, _ = history()
    txn: Any = planted.operations[5].request
    txn.compare[0].mod_revision = 3
    assert any("compares" in v for v in violations(planted))
