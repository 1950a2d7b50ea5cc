"""etcd's busiest responses in their wire form, written out directly.

A page of a List carries hundreds of keys, and one watch event may go to thousands of
watches: building a protobuf message per key or per recipient costs several times what
writing the bytes from the store's records does.  The output is byte for byte what
protobuf's ``SerializeToString`` makes of the same message (fields in number order, zero
values left out), from the field numbers of etcd's ``rpc.proto`` (RangeResponse,
WatchResponse, ResponseHeader) and ``kv.proto`` (KeyValue, Event).

Watch responses rely on protobuf's concatenation rule: a response is its fields without
events followed by the encoded ``events`` fields, so each event is encoded once
(``EncodedEvents``) however many watches receive it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from functools import lru_cache

from k8s_sql.etcd.header import Identity
from k8s_sql.proto import wire
from k8s_sql.proto.wire import bytes_field, int_field, varint
from k8s_sql.store import model

#: ``RangeResponse.header`` and ``WatchResponse.header`` (field 1, a message).
_HEADER_TAG = b"\x0a"
#: ``WatchResponse.watch_id`` (field 2, a varint).
_WATCH_ID_TAG = b"\x10"
#: ``WatchResponse.fragment`` (field 7) set.
FRAGMENT_FIELD = b"\x38\x01"
#: ``WatchResponse.events`` (field 11, a message).
_EVENTS_TAG = b"\x5a"
#: Bytes of encoded events kept for reuse by default (each counted with ``ENTRY_OVERHEAD``).
DEFAULT_ENCODED_CACHE_BYTES = 8 * 1024 * 1024
#: Memory a kept event takes besides its encoding: the Event, its KeyValues and the cache's
#: entry (about 710 bytes on CPython 3.11 for an event with prev_kv and small keys and values).
#: Counting only the encoding let the cache hold ten times its size: 85 MB for small events.
ENTRY_OVERHEAD = 720


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


def header_field(identity: Identity, revision: int) -> bytes:
    """The ``header`` field (1) of a response, present even when empty, as protobuf writes
    a set message field."""
    encoded = header(identity, revision)
    return _HEADER_TAG + varint(len(encoded)) + encoded


def range_response(result: model.RangeResponse, identity: Identity) -> bytes:
    """The encoded ``etcdserverpb.RangeResponse`` (header 1, kvs 2, more 3, count 4)."""
    parts = [header_field(identity, result.revision)]
    append = parts.append
    for kv in result.kvs:
        key, create, mod, version, value = kv.key, kv.create_revision, kv.mod_revision, kv.version, kv.value
        if key and create and mod and version and value and not kv.lease:
            # A live key with a value and no lease, the common case, inline: this loop
            # runs for every key of a page.
            encoded = b"".join(
                (
                    b"\x0a", varint(len(key)), key,
                    b"\x10", varint(create),
                    b"\x18", varint(mod),
                    b"\x20", varint(version),
                    b"\x2a", varint(len(value)), value,
                )
            )  # fmt: skip
        else:
            encoded = key_value(kv)
        append(b"\x12")
        append(varint(len(encoded)))
        append(encoded)
    append(int_field(b"\x18", result.more))
    append(int_field(b"\x20", result.count))
    return b"".join(parts)


def event(change: model.Event, prev_kv: bool) -> bytes:
    """The encoded ``mvccpb.Event`` (type 1, kv 2, prev_kv 3), its ``prev_kv`` only if asked
    for and known."""
    encoded_kv = key_value(change.kv)
    parts = [int_field(b"\x08", int(change.type)), b"\x12", varint(len(encoded_kv)), encoded_kv]
    if prev_kv and change.prev_kv is not None:
        parts.append(bytes_field(b"\x1a", key_value(change.prev_kv)) or b"\x1a\x00")
    return b"".join(parts)


@lru_cache(maxsize=4096)
def watch_id_field(watch_id: int) -> bytes:
    """The ``watch_id`` field of a response, left out for 0 (the ids a server hands out are few)."""
    return int_field(_WATCH_ID_TAG, watch_id)


class EncodedEvents:
    """Events encoded as ``WatchResponse.events`` fields, with the recent ones kept.

    Events are recognised by identity, which is cheap: the hub hands the same objects to
    every watch, and so do reads shared by watches catching up (``k8s_sql.watch.reads``).

    @param max_bytes: the memory kept at most, each event counted as its encoding plus
        ``ENTRY_OVERHEAD``; the least recently used go first.
    """

    def __init__(self, max_bytes: int = DEFAULT_ENCODED_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._size = 0
        # Each entry holds its event, so no other object can take the event's id meanwhile.
        self._kept: OrderedDict[tuple[int, bool], tuple[model.Event, bytes]] = OrderedDict()

    def field(self, change: model.Event, prev_kv: bool) -> bytes:
        """``change`` as one ``events`` field, with its ``prev_kv`` only if ``prev_kv``."""
        key = (id(change), prev_kv)
        kept = self._kept.get(key)
        if kept is not None:
            self._kept.move_to_end(key)
            return kept[1]
        body = event(change, prev_kv)
        encoded = _EVENTS_TAG + varint(len(body)) + body
        if len(encoded) <= self.max_bytes // 8:
            self._kept[key] = (change, encoded)
            self._size += len(encoded) + ENTRY_OVERHEAD
            while self._size > self.max_bytes:
                _, (_, dropped) = self._kept.popitem(last=False)
                self._size -= len(dropped) + ENTRY_OVERHEAD
        return encoded


def fragments(head: bytes, marked: bytes, fields: list[bytes], limit: int) -> Iterator[bytes]:
    """Split one response's ``events`` fields into fragments, as etcd's ``sendFragments``.

    Each fragment is filled while it stays below ``limit`` bytes, with at least one event;
    all but the last start with ``marked`` (the head with ``fragment`` set), the last with
    ``head``.
    """
    index = 0
    while index < len(fields):
        size = len(marked) + len(fields[index])
        end = index + 1
        while end < len(fields) and size + len(fields[end]) < limit:
            size += len(fields[end])
            end += 1
        yield (marked if end < len(fields) else head) + b"".join(fields[index:end])
        index = end
