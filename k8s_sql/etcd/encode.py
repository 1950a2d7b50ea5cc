"""The wire form of a RangeResponse, written out directly.

A page of a List carries hundreds of keys: building a protobuf message per key and then
serializing the response costs about three times as much as writing the bytes from the
store's records here.  The output is byte for byte what protobuf's ``SerializeToString``
makes of ``convert.range_response`` (fields in number order, zero values left out), from
the field numbers of etcd's ``rpc.proto`` (RangeResponse, ResponseHeader) and ``kv.proto``
(KeyValue).
"""

from __future__ import annotations

from k8s_sql.etcd.header import Identity
from k8s_sql.store import model

#: The varints of 0 to 2^14 - 1 (one or two bytes): lengths and small numbers, looked up.
_SHORT = [bytes((value,)) for value in range(0x80)] + [bytes((value & 0x7F | 0x80, value >> 7)) for value in range(0x80, 0x4000)]


def varint(value: int) -> bytes:
    """A protobuf varint; negative values as their 64-bit two's complement, as int64 fields are."""
    if 0 <= value < 0x4000:
        return _SHORT[value]
    if 0 < value < 0x200000:
        return bytes((value & 0x7F | 0x80, value >> 7 & 0x7F | 0x80, value >> 14))
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, value: int) -> bytes:
    """A varint field, left out when zero as proto3 leaves it out."""
    return tag + varint(value) if value else b""


def _bytes_field(tag: bytes, data: bytes) -> bytes:
    return tag + varint(len(data)) + data if data else b""


def key_value(kv: model.KeyValue) -> bytes:
    """The encoded ``mvccpb.KeyValue`` (key 1, create_revision 2, mod_revision 3, version 4,
    value 5, lease 6)."""
    return b"".join((
        _bytes_field(b"\x0a", kv.key), _field(b"\x10", kv.create_revision), _field(b"\x18", kv.mod_revision),
        _field(b"\x20", kv.version), _bytes_field(b"\x2a", kv.value), _field(b"\x30", kv.lease),
    ))


def header(identity: Identity, revision: int) -> bytes:
    """The encoded ``ResponseHeader`` (cluster_id 1, member_id 2, revision 3, raft_term 4)."""
    return b"".join((
        _field(b"\x08", identity.cluster_id),
        _field(b"\x10", identity.member_id),
        _field(b"\x18", revision),
        _field(b"\x20", identity.raft_term),
    ))


def range_response(result: model.RangeResponse, identity: Identity) -> bytes:
    """The encoded ``etcdserverpb.RangeResponse`` (header 1, kvs 2, more 3, count 4)."""
    encoded_header = header(identity, result.revision)
    parts = [b"\x0a", varint(len(encoded_header)), encoded_header]  # a message field, even empty
    append = parts.append
    for kv in result.kvs:
        key, create, mod, version, value = kv.key, kv.create_revision, kv.mod_revision, kv.version, kv.value
        if key and create and mod and version and value and not kv.lease:
            # A live key with a value and no lease, the common case, inline: this loop
            # runs for every key of a page.
            encoded = b"".join((
                b"\x0a", varint(len(key)), key, b"\x10", varint(create), b"\x18", varint(mod),
                b"\x20", varint(version), b"\x2a", varint(len(value)), value,
            ))
        else:
            encoded = key_value(kv)
        append(b"\x12")
        append(varint(len(encoded)))
        append(encoded)
    append(_field(b"\x18", result.more))
    append(_field(b"\x20", result.count))
    return b"".join(parts)
