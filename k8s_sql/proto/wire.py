"""Protobuf's wire format, written by hand where building messages costs too much.

Used to encode etcd's messages directly (``k8s_sql.etcd.encode``, the Watch stream), to
hash the key space as etcd marshals it (``k8s_sql.store.hashing``) and to delimit dump
records (``k8s_sql.migrate.dumpformat``).  Fields follow proto3: zero values left out.
"""

from __future__ import annotations

#: The varints of 0 to 2^14 - 1 (one or two bytes): lengths and small numbers, looked up.
_SHORT = [bytes((value,)) for value in range(0x80)] + [
    bytes((value & 0x7F | 0x80, value >> 7)) for value in range(0x80, 0x4000)
]


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


def int_field(tag: bytes, value: int) -> bytes:
    """A varint field (``tag`` already encoded), left out when zero."""
    return tag + varint(value) if value else b""


def bytes_field(tag: bytes, data: bytes) -> bytes:
    """A length-delimited field (``tag`` already encoded), left out when empty."""
    return tag + varint(len(data)) + data if data else b""


def key_value(key: bytes, create_revision: int, mod_revision: int, version: int, value: bytes, lease: int) -> bytes:
    """An encoded ``mvccpb.KeyValue`` (key 1, create_revision 2, mod_revision 3, version 4,
    value 5, lease 6)."""
    return b"".join(
        (
            bytes_field(b"\x0a", key),
            int_field(b"\x10", create_revision),
            int_field(b"\x18", mod_revision),
            int_field(b"\x20", version),
            bytes_field(b"\x2a", value),
            int_field(b"\x30", lease),
        )
    )
