"""Txn requests nested past upb's depth limit decode as etcd decodes them (k8s_sql.etcd.nesting)."""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError

from k8s_sql.etcd.nesting import decode_txn_request
from k8s_sql.proto import rpc_pb2

LEAF = rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"a"))]).SerializeToString()


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out + bytes([value]))


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def nested(depth: int, leaf: bytes = LEAF, branch: int = 2) -> bytes:
    """A Txn whose ``branch`` (2 success, 3 failure) holds one Txn, ``depth`` levels in all."""
    for _ in range(depth - 1):
        leaf = field(branch, field(4, leaf))
    return leaf


def depth(message: rpc_pb2.TxnRequest) -> int:
    levels = 1
    while message.success and message.success[0].WhichOneof("request") == "request_txn":
        message, levels = message.success[0].request_txn, levels + 1
    return levels


def test_shallow_requests_decode_as_upb_decodes_them() -> None:
    data = rpc_pb2.TxnRequest(
        compare=[rpc_pb2.Compare(key=b"k", target=rpc_pb2.Compare.MOD, mod_revision=3)],
        success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"k", value=b"v"))],
        failure=[rpc_pb2.RequestOp(request_txn=rpc_pb2.TxnRequest.FromString(LEAF))],
    ).SerializeToString()
    assert decode_txn_request(data, 128) == rpc_pb2.TxnRequest.FromString(data)


def test_upb_refuses_what_etcd_decodes() -> None:
    with pytest.raises(DecodeError, match="MaxDepth"):
        rpc_pb2.TxnRequest.FromString(nested(51))


@pytest.mark.parametrize("levels", [51, 100, 129])
def test_deep_requests_decode_whole(levels: int) -> None:
    message = decode_txn_request(nested(levels), 128)
    assert depth(message) == levels
    leaf = message
    while leaf.success[0].WhichOneof("request") == "request_txn":
        leaf = leaf.success[0].request_txn
    assert leaf.success[0].request_range.key == b"a"


def test_both_branches_and_siblings_keep_their_places() -> None:
    deep = nested(60)
    data = field(1, rpc_pb2.Compare(key=b"c").SerializeToString()) + field(2, field(2, b"\x0a\x01p")) + field(
        2, field(4, deep)
    ) + field(3, field(4, nested(70, branch=3))) + field(3, field(1, b"\x0a\x01r"))
    message = decode_txn_request(data, 128)
    assert message.compare[0].key == b"c"
    assert message.success[0].request_put.key == b"p"
    assert depth(message.success[1].request_txn) == 60
    inner, levels = message.failure[0].request_txn, 1
    while inner.failure and inner.failure[0].WhichOneof("request") == "request_txn":
        inner, levels = inner.failure[0].request_txn, levels + 1
    assert levels == 70
    assert message.failure[1].request_range.key == b"r"


def test_nesting_past_what_etcd_can_accept_is_left_empty() -> None:
    """Below max_txn_ops + 1 levels the Txns are empty: etcd's check refuses at that level anyway."""
    message = decode_txn_request(nested(5_000), 128)
    assert depth(message) == 130
    assert depth(decode_txn_request(nested(300), 10)) == 12


def test_repeated_txn_fields_merge_unless_another_request_comes_between() -> None:
    put = field(2, b"\x0a\x01p")
    deep_a = nested(60, field(2, field(2, b"\x0a\x01a")))
    deep_b = nested(60, field(2, field(2, b"\x0a\x01b")))
    merged = decode_txn_request(field(2, field(4, deep_a) + field(4, deep_b)), 128)
    assert len(merged.success[0].request_txn.success) == 2
    cleared = decode_txn_request(field(2, field(4, deep_a) + put + field(4, deep_b)), 128)
    assert len(cleared.success[0].request_txn.success) == 1
    replaced = decode_txn_request(field(2, field(4, deep_a) + put) + nested(60), 128)
    assert replaced.success[0].request_put.key == b"p"


@pytest.mark.parametrize("data", [nested(60)[:-1], nested(60) + b"\x0b", nested(60) + b"\x80"])
def test_malformed_requests_are_decode_errors(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_txn_request(data, 128)
