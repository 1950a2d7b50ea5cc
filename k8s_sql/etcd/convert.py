"""Conversions between the store's model and etcd's protobuf messages.

Requests go from ``etcdserverpb`` to ``k8s_sql.store.model``; results come back with a
``ResponseHeader`` made by an ``Identity``.  Nothing here talks to the store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from k8s_sql.etcd.errors import INVALID_SORT_OPTION
from k8s_sql.etcd.header import Identity
from k8s_sql.proto import kv_pb2, rpc_pb2
from k8s_sql.store import model


def _fields(source: object, names: tuple[str, ...]) -> dict[str, Any]:
    """``source``'s attributes ``names``: the fields etcd's message and the store's record share."""
    return {name: getattr(source, name) for name in names}


_KV_FIELDS = ("key", "create_revision", "mod_revision", "version", "value", "lease")
_PUT_FIELDS = ("key", "value", "lease", "prev_kv", "ignore_value", "ignore_lease")
_RANGE_FIELDS = (
    "key", "range_end", "limit", "revision", "keys_only", "count_only",
    "min_mod_revision", "max_mod_revision", "min_create_revision", "max_create_revision",
)  # fmt: skip


def kv_message(kv: model.KeyValue) -> kv_pb2.KeyValue:
    """The ``mvccpb.KeyValue`` for a stored key version."""
    return kv_pb2.KeyValue(**_fields(kv, _KV_FIELDS))


def kv_of(message: kv_pb2.KeyValue) -> model.KeyValue:
    """The stored key version an ``mvccpb.KeyValue`` (an etcd answer, a dump or snapshot record) holds."""
    return model.KeyValue(**_fields(message, _KV_FIELDS))


# --- requests -------------------------------------------------------------------------


def range_request(message: rpc_pb2.RangeRequest) -> model.RangeRequest:
    """A store range from etcd's.

    An unknown sort order is taken as etcd 3.5 takes it (``SortOrder.UNKNOWN``); an unknown
    sort target is refused with "invalid sort option", where etcd 3.5 panics (newer etcd
    refuses it so).
    """
    try:
        sort_target = model.SortTarget(message.sort_target)
    except ValueError:
        raise INVALID_SORT_OPTION.exception() from None
    return model.RangeRequest(
        sort_order=model.SortOrder(message.sort_order), sort_target=sort_target, **_fields(message, _RANGE_FIELDS)
    )


def put_request(message: rpc_pb2.PutRequest) -> model.PutRequest:
    """A store put from etcd's."""
    return model.PutRequest(**_fields(message, _PUT_FIELDS))


def delete_range_request(message: rpc_pb2.DeleteRangeRequest) -> model.DeleteRangeRequest:
    """A store delete from etcd's."""
    return model.DeleteRangeRequest(key=message.key, range_end=message.range_end, prev_kv=message.prev_kv)


_COMPARE_OPERAND = {
    model.CompareTarget.VERSION: "version",
    model.CompareTarget.CREATE: "create_revision",
    model.CompareTarget.MOD: "mod_revision",
    model.CompareTarget.VALUE: "value",
    model.CompareTarget.LEASE: "lease",
}


def compare(message: rpc_pb2.Compare) -> model.Compare:
    """A store compare from etcd's; the operand is the union field the target names."""
    target = model.CompareTarget(message.target)
    return model.Compare(
        target=target,
        result=model.CompareResult(message.result),
        key=message.key,
        operand=getattr(message, _COMPARE_OPERAND[target]),
        range_end=message.range_end,
    )


def txn_request(message: rpc_pb2.TxnRequest) -> model.TxnRequest:
    """A store transaction from etcd's, nested transactions included."""
    return model.TxnRequest(
        compare=tuple(compare(c) for c in message.compare),
        success=tuple(request_op(op) for op in message.success),
        failure=tuple(request_op(op) for op in message.failure),
    )


_REQUEST_OPS: dict[str, Callable[..., model.RequestOp]] = {
    "request_range": range_request,
    "request_put": put_request,
    "request_delete_range": delete_range_request,
    "request_txn": txn_request,
}


def request_op(message: rpc_pb2.RequestOp) -> model.RequestOp:
    """One operation of a transaction branch.

    An empty ``RequestOp`` is read as an empty range, which the store refuses for its
    missing key, as etcd does.
    """
    which = message.WhichOneof("request")
    if which is None:
        return model.RangeRequest(key=b"")
    return _REQUEST_OPS[which](getattr(message, which))


# --- responses ------------------------------------------------------------------------


def range_response(result: model.RangeResponse, identity: Identity) -> rpc_pb2.RangeResponse:
    """etcd's RangeResponse for a store result."""
    return rpc_pb2.RangeResponse(
        header=identity.header(result.revision),
        kvs=[kv_message(kv) for kv in result.kvs],
        more=result.more,
        count=result.count,
    )


def put_response(result: model.PutResponse, identity: Identity) -> rpc_pb2.PutResponse:
    """etcd's PutResponse for a store result."""
    message = rpc_pb2.PutResponse(header=identity.header(result.revision))
    if result.prev_kv is not None:
        message.prev_kv.CopyFrom(kv_message(result.prev_kv))
    return message


def delete_range_response(result: model.DeleteRangeResponse, identity: Identity) -> rpc_pb2.DeleteRangeResponse:
    """etcd's DeleteRangeResponse for a store result."""
    return rpc_pb2.DeleteRangeResponse(
        header=identity.header(result.revision),
        deleted=result.deleted,
        prev_kvs=[kv_message(kv) for kv in result.prev_kvs],
    )


def txn_response(
    result: model.TxnResponse, identity: Identity, into: rpc_pb2.TxnResponse | None = None
) -> rpc_pb2.TxnResponse:
    """etcd's TxnResponse for a store result; every inner response keeps its own header.

    Built in place (in ``into`` when given): upb copies a sub-message by re-parsing it,
    which fails past its depth limit, and etcd answers Txns nested 128 deep.
    """
    message = rpc_pb2.TxnResponse() if into is None else into
    message.header.CopyFrom(identity.header(result.revision))
    message.succeeded = result.succeeded
    for response in result.responses:
        response_op(response, identity, message.responses.add())
    return message


def response_op(
    result: model.ResponseOp, identity: Identity, into: rpc_pb2.ResponseOp | None = None
) -> rpc_pb2.ResponseOp:
    """One inner response of a transaction (built in ``into`` when given)."""
    message = rpc_pb2.ResponseOp() if into is None else into
    if isinstance(result, model.RangeResponse):
        message.response_range.CopyFrom(range_response(result, identity))
    elif isinstance(result, model.PutResponse):
        message.response_put.CopyFrom(put_response(result, identity))
    elif isinstance(result, model.DeleteRangeResponse):
        message.response_delete_range.CopyFrom(delete_range_response(result, identity))
    else:
        txn_response(result, identity, message.response_txn)
    return message
