"""The model of ``reference.py`` answers as a real etcd 3.5.1 does.

The property tests trust the model; this test earns that trust.  Random operations go to
the model and to an etcd started for the module, and every answer is compared once both
are turned into etcd's messages and errors (``k8s_sql.etcd.convert`` and ``errors``): the
same header revisions, key-values, counts, flags, inner responses and error texts.

One etcd serves every example, so each example works under a key prefix above all the
earlier ones (ranges reach upwards only) and the model starts at etcd's revision and
compaction.  Not generated: puts keeping a value or lease inside transactions, which can
crash etcd 3.5 (a panic when the key was deleted earlier in the same transaction), and
the change feed, which the watch tests compare with etcd.  Keys sorted by an equal value
may come in another order (see ``ties_unordered``).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterator

import grpc
import pytest
from google.protobuf.json_format import MessageToDict
from hypothesis import HealthCheck, given, settings, strategies as st

from k8s_sql.etcd import convert
from k8s_sql.etcd.errors import to_grpc_error
from k8s_sql.etcd.header import Identity
from k8s_sql.proto import rpc_pb2
from k8s_sql.store.errors import StoreError
from k8s_sql.store.model import (
    Compare,
    DeleteRangeRequest,
    PutRequest,
    RangeRequest,
    RequestOp,
    TxnRequest,
)
from tests.differential import strip_identity
from tests.etcdclient import EtcdClient
from tests.processes import Etcd
from tests.store.reference import Reference
from tests.store.test_properties import deletes, fills, puts, ranges, revisions, txns

NOBODY = Identity(0, 0, 0)
SORT_FIELDS = {1: "version", 2: "createRevision", 3: "modRevision", 4: "value"}
plain_puts = puts.map(lambda put: dataclasses.replace(put, ignore_value=False, ignore_lease=False))


@pytest.fixture(scope="module")
def etcd() -> Iterator[tuple[EtcdClient, dict[str, int]]]:
    """A real etcd, its client, and what the test knows of it across examples."""
    with Etcd() as server:
        client = EtcdClient(server.endpoint)
        try:
            yield client, {"example": 0, "compacted": -1}
        finally:
            client.close()


@dataclasses.dataclass(frozen=True)
class Place:
    """Where an example runs in the shared etcd: its key prefix, first revision and lease IDs.

    Examples are drawn as if the store started empty at revision 0, so that a replay draws
    the same data; ``place`` moves them to where they really run.
    """

    prefix: bytes
    start: int
    leases: int

    def revision(self, revision: int) -> int:
        return revision and self.start + revision

    def lease(self, lease: int) -> int:
        return lease and self.leases + lease

    def place(self, request: Any) -> Any:
        """``request`` with its keys under the prefix (range ends "to the end" stay), its
        revisions counted from ``start`` and its leases numbered from ``leases``."""
        end = lambda range_end: range_end if range_end in (b"", b"\0") else self.prefix + range_end
        if isinstance(request, RangeRequest):
            return dataclasses.replace(
                request,
                key=self.prefix + request.key,
                range_end=end(request.range_end),
                **{name: self.revision(getattr(request, name)) for name in REVISION_FIELDS},
            )
        if isinstance(request, DeleteRangeRequest):
            return dataclasses.replace(request, key=self.prefix + request.key, range_end=end(request.range_end))
        if isinstance(request, Compare):
            moved = self.revision(request.operand) if request.target in (1, 2) and isinstance(request.operand, int) else request.operand
            return dataclasses.replace(request, key=self.prefix + request.key, range_end=end(request.range_end), operand=moved)
        if isinstance(request, PutRequest):
            return dataclasses.replace(request, key=self.prefix + request.key, lease=self.lease(request.lease))
        return TxnRequest(
            tuple(self.place(compare) for compare in request.compare),
            tuple(self.place(op) for op in request.success),
            tuple(self.place(op) for op in request.failure),
        )


REVISION_FIELDS = ("revision", "min_mod_revision", "max_mod_revision", "min_create_revision", "max_create_revision")


def message(request: Any) -> Any:
    """etcd's request message for a model request."""
    if isinstance(request, RangeRequest):
        return rpc_pb2.RangeRequest(**{f.name: getattr(request, f.name) for f in dataclasses.fields(request)})
    if isinstance(request, PutRequest):
        return rpc_pb2.PutRequest(**{f.name: getattr(request, f.name) for f in dataclasses.fields(request)})
    if isinstance(request, DeleteRangeRequest):
        return rpc_pb2.DeleteRangeRequest(key=request.key, range_end=request.range_end, prev_kv=request.prev_kv)
    return rpc_pb2.TxnRequest(
        compare=[_compare(compare) for compare in request.compare],
        success=[_op(op) for op in request.success],
        failure=[_op(op) for op in request.failure],
    )


def _compare(compare: Compare) -> rpc_pb2.Compare:
    field = {0: "version", 1: "create_revision", 2: "mod_revision", 3: "value", 4: "lease"}[compare.target]
    operand = compare.operand
    if (field == "value") != isinstance(operand, bytes):
        operand = b"" if field == "value" else 0
    return rpc_pb2.Compare(result=compare.result, target=compare.target, key=compare.key, range_end=compare.range_end, **{field: operand})


def _op(op: RequestOp) -> rpc_pb2.RequestOp:
    kind = {RangeRequest: "request_range", PutRequest: "request_put", DeleteRangeRequest: "request_delete_range"}
    return rpc_pb2.RequestOp(**{kind.get(type(op), "request_txn"): message(op)})


def ties_unordered(request: Any, answer: Any) -> Any:
    """``answer`` with the order among keys of equal sort value forgotten.

    etcd sorts with Go's unstable ``sort.Sort``, whose order among equal values changes
    with the Go version (etcd 3.5: a shell pass, then insertion sort; 3.6: pdqsort); the
    store keeps them in key order.  A truncated answer's last run of equal values may even
    hold different keys: only its length and value are kept.
    """
    if not isinstance(request, RangeRequest) or request.sort_target == 0 or failed(answer) or "kvs" not in answer:
        return answer
    field = SORT_FIELDS[request.sort_target]
    runs: list[list[dict]] = []
    for kv in answer["kvs"]:
        if runs and runs[-1][0].get(field) == kv.get(field):
            runs[-1].append(kv)
        else:
            runs.append([kv])
    kept = [sorted(run, key=lambda kv: kv["key"]) for run in runs]
    if answer.get("more"):
        kept[-1] = [len(kept[-1]), kept[-1][0].get(field)]
    return {**answer, "kvs": kept}


def etcd_answer(call: Any, request: Any) -> Any:
    try:
        return strip_identity(MessageToDict(call(request, timeout=30)))
    except grpc.RpcError as error:
        return {"error": error.code().name, "message": error.details()}


def failed(answer: Any) -> bool:
    """Whether an answer is an error."""
    return isinstance(answer, dict) and "error" in answer


def model_answer(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except StoreError as failure:
        error = to_grpc_error(failure)
        return {"error": error.code.name, "message": error.message}


RESPONSES = {
    RangeRequest: convert.range_response,
    PutRequest: convert.put_response,
    DeleteRangeRequest: convert.delete_range_response,
    TxnRequest: convert.txn_response,
}

KV_METHODS = {RangeRequest: "Range", PutRequest: "Put", DeleteRangeRequest: "DeleteRange", TxnRequest: "Txn"}
MODEL_METHODS = {RangeRequest: "range", PutRequest: "put", DeleteRangeRequest: "delete_range", TxnRequest: "txn"}


def kv_operations(current: int) -> st.SearchStrategy[tuple]:
    """KV operations, compactions and lease grants and revocations, for a store at ``current``."""
    return st.one_of(
        st.tuples(st.just("kv"), puts),
        st.tuples(st.just("kv"), deletes),
        st.tuples(st.just("kv"), ranges(current)),
        st.tuples(st.just("kv"), ranges(current)),
        st.tuples(st.just("kv"), txns(current, 2, plain_puts)),
        st.tuples(st.just("kv"), fills),
        st.tuples(st.just("compact"), revisions(current), st.booleans()),
        st.tuples(st.just("grant"), st.sampled_from([1, 2])),
        st.tuples(st.just("revoke"), st.sampled_from([1, 2, 3])),
    )


@settings(
    max_examples=int(os.environ.get("K8S_SQL_PROPERTY_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_the_model_answers_as_etcd(etcd: tuple[EtcdClient, dict[str, int]], data: st.DataObject) -> None:
    client, known = etcd
    known["example"] += 1
    start = int(client.KV.Range(rpc_pb2.RangeRequest(key=b"/")).header.revision)
    here = Place(b"%08d/" % known["example"], start, known["example"] * 10)
    model = Reference(start, known["compacted"])
    for _ in range(data.draw(st.integers(min_value=5, max_value=30), label="steps")):
        kind, *args = data.draw(kv_operations(model.revision - start))
        if kind == "kv":
            request = here.place(args[0])
            expected = model_answer(getattr(model, MODEL_METHODS[type(request)]), request)
            if not failed(expected):
                expected = strip_identity(MessageToDict(RESPONSES[type(request)](expected, NOBODY)))
            got = etcd_answer(getattr(client.KV, KV_METHODS[type(request)]), message(request))
            expected, got = ties_unordered(request, expected), ties_unordered(request, got)
        elif kind == "compact":
            revision = here.revision(args[0]) if args[0] >= 0 else args[0]
            expected = model_answer(model.compact, revision, args[1])
            if not failed(expected):
                expected = {"header": {"revision": str(expected)}}
            got = etcd_answer(client.KV.Compact, rpc_pb2.CompactionRequest(revision=revision, physical=args[1]))
            if not failed(got):
                known["compacted"] = revision  # etcd's, whatever the model said
        elif kind == "grant":
            expected = model_answer(model.lease_grant, here.lease(args[0]), 600, 0.0)
            got = etcd_answer(client.Lease.LeaseGrant, rpc_pb2.LeaseGrantRequest(ID=here.lease(args[0]), TTL=600))
            # etcd raises small TTLs to its minimum: compare only whether the grant succeeded.
            expected, got = failed(expected) and expected, failed(got) and got
        else:
            expected = model_answer(model.lease_revoke, here.lease(args[0]))
            if not failed(expected):
                expected = {"header": {"revision": str(expected)}}
            got = etcd_answer(client.Lease.LeaseRevoke, rpc_pb2.LeaseRevokeRequest(ID=here.lease(args[0])))
        assert got == expected, (kind, args)
