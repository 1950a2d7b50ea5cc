"""Decoding TxnRequests nested deeper than protobuf's default depth limit, as etcd does.

upb, protobuf's Python runtime, refuses a message nested more than 100 deep: a Txn inside
a Txn 50 times over.  etcd decodes any depth and refuses deep nesting only in its
``checkTxnRequest``, with "too many operations in txn request": each level spends at least
one of the ``max_txn_ops`` operations (128) its ancestors leave, so a chain of one-operation
Txns is accepted 128 deep, 129 when the last one is empty, and never deeper.

:func:`decode_txn_request` reads a TxnRequest one nesting level at a time, each level parsed
by upb with its nested Txns cut out and then filled in place.  Below ``max_txn_ops + 1``
levels the nested Txns are left empty: etcd's check refuses at that level, whatever they
hold, before it looks inside them.  So the work and the recursion stay bounded for any input,
and the answer is etcd's, in the order etcd checks.
"""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf.message import DecodeError

from k8s_sql.proto import rpc_pb2

# Field numbers of etcd's rpc.proto.
_SUCCESS, _FAILURE = 2, 3  # TxnRequest: repeated RequestOp
_REQUEST_TXN = 4  # RequestOp: oneof request { range 1, put 2, delete_range 3, txn 4 }
_LENGTH_DELIMITED = 2
_EMPTY_TXN = bytes([_REQUEST_TXN << 3 | _LENGTH_DELIMITED, 0])


def decode_txn_request(data: bytes, max_txn_ops: int) -> rpc_pb2.TxnRequest:
    """The TxnRequest in ``data``, nested as deep as etcd could accept it.

    Raises ``DecodeError`` for bytes that are not a TxnRequest.
    """
    try:
        return rpc_pb2.TxnRequest.FromString(data)
    except DecodeError:
        pass
    message = rpc_pb2.TxnRequest()
    _merge_level(data, message, max_txn_ops + 1)
    return message


def _merge_level(data: bytes, into: rpc_pb2.TxnRequest, levels: int) -> None:
    """Merge one TxnRequest level into ``into``, then its nested Txns, ``levels`` deep."""
    flat = bytearray()
    nested: list[tuple[int, int, bytes]] = []
    count = {_SUCCESS: 0, _FAILURE: 0}
    for number, wire_type, tag, field, value in _fields(data):
        if number in count and wire_type == _LENGTH_DELIMITED:
            cut, txn = _cut_txn(value)
            flat += tag + _varint(len(cut)) + cut
            if txn is not None:
                nested.append((number, count[number], txn))
            count[number] += 1
        else:
            flat += field
    into.MergeFromString(bytes(flat))
    if levels <= 1:
        return
    for number, index, txn in nested:
        op = (into.success if number == _SUCCESS else into.failure)[index]
        if op.WhichOneof("request") == "request_txn":
            _merge_level(txn, op.request_txn, levels - 1)


def _cut_txn(op: bytes) -> tuple[bytes, bytes | None]:
    """A RequestOp with its nested Txn emptied, and that Txn's bytes (None if it has none).

    Several ``request_txn`` fields merge, as protobuf merges them, unless another member of
    the oneof comes between them, which clears the Txn.
    """
    flat = bytearray()
    txn: list[bytes] | None = None
    for number, wire_type, _, field, value in _fields(op):
        if number == _REQUEST_TXN and wire_type == _LENGTH_DELIMITED:
            txn = [*(txn or ()), value]
            flat += _EMPTY_TXN
        else:
            if number < _REQUEST_TXN:
                txn = None
            flat += field
    return bytes(flat), None if txn is None else b"".join(txn)


def _fields(data: bytes) -> Iterator[tuple[int, int, bytes, bytes, bytes]]:
    """Each field of a message: number, wire type, the tag's bytes, the whole field's, the value's."""
    offset, end = 0, len(data)
    while offset < end:
        start = offset
        tag, offset = _read_varint(data, offset)
        number, wire_type, tag_end = tag >> 3, tag & 7, offset
        value_start = offset
        if wire_type == 0:
            _, offset = _read_varint(data, offset)
        elif wire_type == 1:
            offset += 8
        elif wire_type == 5:
            offset += 4
        elif wire_type == _LENGTH_DELIMITED:
            length, value_start = _read_varint(data, offset)
            offset = value_start + length
        else:
            raise DecodeError(f"unsupported wire type {wire_type}")
        if number == 0 or offset > end:
            raise DecodeError("truncated or invalid field")
        yield number, wire_type, data[start:tag_end], data[start:offset], data[value_start:offset]


def _read_varint(data: bytes, offset: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if offset >= len(data) or shift > 63:
            raise DecodeError("truncated or invalid varint")
        byte = data[offset]
        offset += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, offset
        shift += 7


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
