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
from k8s_sql.proto import wire
from k8s_sql.proto.wire import int_field, varint
from k8s_sql.store import model


def key_value(kv: model.KeyValue) -> bytes:
    """The encoded ``mvccpb.KeyValue``."""
    return wire.key_value(kv.key, kv.create_revision, kv.mod_revision, kv.version, kv.value, kv.lease)


def header(identity: Identity, revision: int) -> bytes:
    """The encoded ``ResponseHeader`` (cluster_id 1, member_id 2, revision 3, raft_term 4)."""
    return b"".join(
        (
            int_field(b"\x08", identity.cluster_id),
            int_field(b"\x10", identity.member_id),
            int_field(b"\x18", revision),
            int_field(b"\x20", identity.raft_term),
        )
    )


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
            encoded = b"".join(
                (
                    b"\x0a",
                    varint(len(key)),
                    key,
                    b"\x10",
                    varint(create),
                    b"\x18",
                    varint(mod),
                    b"\x20",
                    varint(version),
                    b"\x2a",
                    varint(len(value)),
                    value,
                )
            )
        else:
            encoded = key_value(kv)
        append(b"\x12")
        append(varint(len(encoded)))
        append(encoded)
    append(int_field(b"\x18", result.more))
    append(int_field(b"\x20", result.count))
    return b"".join(parts)
