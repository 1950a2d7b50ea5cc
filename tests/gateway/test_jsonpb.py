"""JSON ↔ protobuf as etcd 3.5's gateway maps it: the reading rules found by sending the
same bodies to etcd 3.5.1, and writing checked against protobuf's own JSON printer."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import given, settings
from hypothesis import strategies as st

from k8s_sql.gateway.jsonpb import DecodeError, dumps, json_values, message_from_json, message_to_json
from k8s_sql.gateway.routes import routes
from k8s_sql.proto import kv_pb2, rpc_pb2

RR = rpc_pb2.RangeRequest


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"key": "Zm9v"}, RR(key=b"foo")),
        ({"key": "Zm9v", "rangeEnd": "Zm9w"}, RR(key=b"foo", range_end=b"fop")),
        ({"key": "Zm9v", "limit": "2"}, RR(key=b"foo", limit=2)),
        ({"key": "Zm9v", "limit": 2}, RR(key=b"foo", limit=2)),
        ({"key": "Zm9v", "limit": " 2 "}, RR(key=b"foo", limit=2)),
        ({"key": "Zm9v", "sort_order": "DESCEND"}, RR(key=b"foo", sort_order=RR.DESCEND)),
        ({"key": "Zm9v", "sort_order": 7}, RR(key=b"foo", sort_order=7)),  # type: ignore[arg-type]
        ({"key": "Zm9v", "unknown": {"x": [1]}}, RR(key=b"foo")),
        ({"key": None, "limit": None}, RR()),
        ({"key": "Zm9v\nZm9v"}, RR(key=b"foofoo")),
        (None, RR()),
    ],
)
def test_accepted_as_etcd_accepts_it(body: Any, expected: RR) -> None:
    assert message_from_json(body, RR) == expected


@pytest.mark.parametrize(
    "body",
    [
        {"key": 5},
        {"key": "Zm9"},  # unpadded
        {"key": "-_8="},  # URL-safe alphabet
        {"key": "not base64!"},
        {"limit": "abc"},
        {"limit": 1.5},
        {"limit": 1.0},
        {"limit": 1e400},
        {"limit": 2**63},
        {"limit": True},
        {"sort_order": "BOGUS"},
        {"keys_only": "true"},
        {"count_only": 1},
        "str",
        [],
        5,
    ],
)
def test_refused_as_etcd_refuses_it(body: Any) -> None:
    with pytest.raises(DecodeError):
        message_from_json(body, RR)


def test_nested_messages_repeated_fields_and_oneofs() -> None:
    body = {
        "compare": [{"key": "YQ==", "target": "MOD", "result": "LESS", "mod_revision": "7"}],
        "success": [{"request_put": {"key": "YQ==", "value": "Yg=="}}, {"request_range": {}}],
        "failure": None,
    }
    expected = rpc_pb2.TxnRequest(
        compare=[rpc_pb2.Compare(key=b"a", target=rpc_pb2.Compare.MOD, result=rpc_pb2.Compare.LESS, mod_revision=7)],
        success=[
            rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"a", value=b"b")),
            rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest()),
        ],
    )
    decoded = message_from_json(body, rpc_pb2.TxnRequest)
    assert decoded == expected
    assert decoded.success[1].WhichOneof("request") == "request_range"
    with pytest.raises(DecodeError):
        message_from_json({"compare": {"key": "YQ=="}}, rpc_pb2.TxnRequest)


def test_nesting_too_deep_is_refused_not_a_crash() -> None:
    body: dict[str, Any] = {}
    for _ in range(5000):
        body = {"success": [{"request_txn": body}]}
    with pytest.raises(DecodeError):
        message_from_json(body, rpc_pb2.TxnRequest)
    with pytest.raises(DecodeError):
        list(json_values("[" * 100000))


def test_written_as_etcd_writes_it() -> None:
    response = rpc_pb2.RangeResponse(
        header=rpc_pb2.ResponseHeader(cluster_id=2**63 + 1, revision=2),
        kvs=[kv_pb2.KeyValue(key=b"foo", create_revision=2, mod_revision=2, version=1, value=b"bar")],
        count=1,
    )
    assert dumps(message_to_json(response)) == (
        b'{"header":{"cluster_id":"9223372036854775809","revision":"2"},'
        b'"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"}'
    )
    assert dumps(message_to_json(rpc_pb2.WatchResponse(watch_id=-1, header=rpc_pb2.ResponseHeader()))) == (
        b'{"header":{},"watch_id":"-1"}'
    )
    assert dumps(message_to_json(rpc_pb2.HashResponse(hash=7))) == b'{"hash":7}'
    assert dumps(message_to_json(kv_pb2.Event(type=kv_pb2.Event.DELETE))) == b'{"type":"DELETE"}'


def test_json_values_reads_a_stream_of_values() -> None:
    assert list(json_values(' {"a":1}{"b":2}\n [3] "x" ')) == [{"a": 1}, {"b": 2}, [3], "x"]
    assert list(json_values("  \n")) == []
    values = json_values('{"a":1} {"b"')
    assert next(values) == {"a": 1}
    with pytest.raises(DecodeError):
        next(values)
    with pytest.raises(DecodeError):
        list(json_values("NaN"))


def _message_types() -> set[type]:
    types = set()
    for route in routes().values():
        types.update((route.request, route.response))
    return types


def _reachable_fields() -> list[FieldDescriptor]:
    seen, fields, todo = set(), [], [t.DESCRIPTOR for t in _message_types()]
    while todo:
        descriptor = todo.pop()
        if descriptor.full_name in seen:
            continue
        seen.add(descriptor.full_name)
        for field in descriptor.fields:
            fields.append(field)
            if field.message_type is not None:
                todo.append(field.message_type)
    return fields


def test_the_etcd_api_has_no_field_type_the_mapping_leaves_out() -> None:
    unsupported = (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_GROUP)
    for field in _reachable_fields():
        assert field.type not in unsupported, field.full_name
        assert not (field.message_type is not None and field.message_type.GetOptions().map_entry), field.full_name


def _messages(message_type: type, depth: int = 0) -> st.SearchStrategy[Any]:
    """Random messages of ``message_type``, every field possibly set."""
    strategies: dict[str, st.SearchStrategy[Any]] = {}
    for field in message_type.DESCRIPTOR.fields:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth >= 2:
                continue
            inner = _messages(field.message_type._concrete_class, depth + 1)
            value = st.lists(inner, max_size=2) if field.is_repeated else inner
        else:
            scalar = _scalars(field)
            value = st.lists(scalar, max_size=3) if field.is_repeated else scalar
        strategies[field.name] = value
    return st.fixed_dictionaries({}, optional=strategies).map(lambda fields: _build(message_type, fields))


def _build(message_type: type, fields: dict[str, Any]) -> Any:
    message = message_type()
    for name, value in fields.items():
        field = message_type.DESCRIPTOR.fields_by_name[name]
        if field.is_repeated:
            target = getattr(message, name)
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                for element in value:
                    target.add().CopyFrom(element)
            else:
                target.extend(value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(message, name).CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


def _scalars(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_STRING:
        return st.text(max_size=8)
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=8)
    if kind == FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([value.number for value in field.enum_type.values])
    signed = kind in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64)
    if kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    if kind in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
        return st.integers(-(2**31), 2**31 - 1)
    return st.integers(-(2**63), 2**63 - 1) if signed else st.integers(0, 2**64 - 1)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(_message_types(), key=lambda t: t.DESCRIPTOR.full_name)).flatmap(_messages))
def test_what_is_written_reads_back_the_same(message: Any) -> None:
    import json

    assert message_from_json(json.loads(dumps(message_to_json(message))), type(message)) == message


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                        st.sampled_from(["key", "range_end", "limit", "sort_order", "compare", "success",
                                         "request_put", "target", "value", "keys_only", "x"]), inner, max_size=4),
                    max_leaves=12))
def test_any_json_is_read_or_refused_never_a_crash(value: Any) -> None:
    for message_type in (rpc_pb2.RangeRequest, rpc_pb2.TxnRequest, rpc_pb2.WatchRequest):
        try:
            message_from_json(value, message_type)
        except DecodeError:
            pass
