"""Deeply nested Txns get the same answers from k8s-sql as from etcd 3.5.1.

etcd accepts a chain of one-operation Txns 128 deep (129 when the innermost is empty) and
refuses deeper ones with "too many operations in txn request", in its own check order; the
answers are compared as (code, message), or for a success as the response's nesting depth
and the keys its innermost range read.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google._upb import _message  # type: ignore[import-not-found]

from k8s_sql.proto import rpc_pb2
from tests.etcd.test_nesting import field, nested
from tests.processes import Etcd, K8sSQL

EMPTY_PUT = field(2, field(2, b""))

REQUESTS = {
    "50 deep": nested(50),
    "128 deep": nested(128),
    "129 deep": nested(129),
    "129 deep, the last empty": nested(129, b""),
    "130 deep, the last empty": nested(130, b""),
    "20000 deep": nested(20_000),
    "too deep, then an empty key": field(2, field(4, nested(300))) + EMPTY_PUT,
    "an empty key, then too deep": EMPTY_PUT + field(2, field(4, nested(300))),
    "an empty key 120 deep": nested(120, EMPTY_PUT),
    "two compares above 127 levels": field(1, rpc_pb2.Compare(key=b"a").SerializeToString()) * 2
    + field(2, field(4, nested(127))),
}


def answers(endpoint: str) -> dict[str, Any]:
    """Each request's answer from the server at ``endpoint``."""
    found: dict[str, Any] = {}
    with grpc.insecure_channel(endpoint) as channel:
        txn = channel.unary_unary("/etcdserverpb.KV/Txn", request_serializer=bytes, response_deserializer=bytes)
        put = channel.unary_unary(
            "/etcdserverpb.KV/Put",
            request_serializer=rpc_pb2.PutRequest.SerializeToString,
            response_deserializer=rpc_pb2.PutResponse.FromString,
        )
        put(rpc_pb2.PutRequest(key=b"a", value=b"1"), timeout=30)
        for name, request in REQUESTS.items():
            try:
                found[name] = summary(txn(request, timeout=30))
            except grpc.RpcError as error:
                found[name] = (error.code().name, error.details())
    return found


def summary(data: bytes) -> tuple[str, int, list[bytes]]:
    """A TxnResponse as (OK, nesting depth, keys its innermost range read)."""
    _message.SetAllowOversizeProtos(True)  # only in this test process: the responses nest past upb's limit
    try:
        response = rpc_pb2.TxnResponse.FromString(data)
    finally:
        _message.SetAllowOversizeProtos(False)
    levels = 1
    while response.responses and response.responses[0].WhichOneof("response") == "response_txn":
        response, levels = response.responses[0].response_txn, levels + 1
    keys = [kv.key for op in response.responses for kv in op.response_range.kvs]
    return ("OK", levels, keys)


@pytest.fixture(scope="module")
def etcd_answers() -> dict[str, Any]:
    with Etcd() as etcd:
        return answers(etcd.endpoint)


def test_nested_txns_are_answered_as_etcd_answers(etcd_answers: dict[str, Any], backend: str) -> None:
    assert etcd_answers["128 deep"] == ("OK", 128, [b"a"])
    with K8sSQL(backend) as server:
        assert answers(server.endpoint) == etcd_answers
