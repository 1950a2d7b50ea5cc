"""The dump file format, version 1: bytes in, records out, and back.

A dump is ``MAGIC`` followed by records, each a ``k8s_sql.dump.Record`` protobuf message
(``k8s_sql/proto/dump.proto``) prefixed by its length as a base-128 varint, as protobuf's
"delimited" streams.  The first record is a ``Header``, the last a ``Trailer`` holding the
record counts and the CRC-32 of every byte before it; in between come ``Lease`` records and
``KeyValue`` records (``mvccpb.KeyValue``) in strictly ascending key order, each lease
before the keys attached to it.  A file may be gzip-compressed as a whole.
"""

from __future__ import annotations

import zlib

from k8s_sql.etcd.convert import kv_message
from k8s_sql.migrate.snapshot import SnapshotHeader
from k8s_sql.proto import dump_pb2
from k8s_sql.proto.wire import varint
from k8s_sql.store.model import KeyValue, LeaseTimeToLive

MAGIC = b"k8s-sql-dump\n"

#: The format version this module writes and reads.
FORMAT = 1

#: No record is larger: a longer length means a damaged file.
MAX_RECORD_BYTES = 1 << 30


class DumpError(Exception):
    """A file that is not a complete, intact dump this version can read."""


def frame(record: dump_pb2.Record) -> bytes:
    """One record as it is written: length prefix, then the message."""
    payload = record.SerializeToString()
    return varint(len(payload)) + payload


def header_record(header: SnapshotHeader, producer: str) -> dump_pb2.Record:
    """The first record of a dump of the snapshot ``header`` describes."""
    return dump_pb2.Record(
        header=dump_pb2.Header(
            format=FORMAT,
            revision=header.revision,
            compact_revision=header.compact_revision,
            keys=header.keys,
            source=header.source,
            producer=producer,
        )
    )


def lease_record(lease: LeaseTimeToLive) -> dump_pb2.Record:
    """The record of a lease."""
    return dump_pb2.Record(lease=dump_pb2.Lease(id=lease.id, granted_ttl=lease.granted_ttl, ttl=lease.ttl))


def kv_record(kv: KeyValue) -> dump_pb2.Record:
    """The record of a key."""
    return dump_pb2.Record(kv=kv_message(kv))


def snapshot_header(record: dump_pb2.Header) -> SnapshotHeader:
    """The snapshot a dump's header describes; ``DumpError`` for a format this version cannot read."""
    if record.format != FORMAT:
        raise DumpError(f"the dump has format version {record.format}; this k8s-sql reads version {FORMAT}")
    return SnapshotHeader(record.revision, record.compact_revision, record.keys, record.source)


def lease_of(record: dump_pb2.Lease) -> LeaseTimeToLive:
    """The lease a record holds."""
    return LeaseTimeToLive(record.id, record.ttl, record.granted_ttl)


class RecordReader:
    """Splits a dump's bytes, fed in pieces of any size, into records, checking the framing.

    It checks the magic, that the header comes first and only once, and that the trailer's
    CRC matches; the counts and key order are the reader's business.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._magic = False
        self._records = 0
        self._crc = 0
        self._ended = False

    def feed(self, data: bytes) -> list[dump_pb2.Record]:
        """Take the next bytes; return the records they complete."""
        self._buffer += data
        if not self._magic:
            if len(self._buffer) < len(MAGIC):
                if not MAGIC.startswith(bytes(self._buffer)):
                    raise DumpError("this is not a k8s-sql dump file")
                return []
            if not self._buffer.startswith(MAGIC):
                raise DumpError("this is not a k8s-sql dump file")
            self._crc = zlib.crc32(MAGIC)
            del self._buffer[: len(MAGIC)]
            self._magic = True
        records = []
        offset = 0
        while offset < len(self._buffer):
            if self._ended:
                raise DumpError("the dump has data after its trailer")
            decoded = _decode_varint(self._buffer, offset)
            if decoded is None:
                break
            length, start = decoded
            if length > MAX_RECORD_BYTES:
                raise DumpError(f"a record claims {length} bytes: the dump is damaged")
            if start + length > len(self._buffer):
                break
            records.append(self._record(bytes(self._buffer[offset:start]), bytes(self._buffer[start : start + length])))
            offset = start + length
        del self._buffer[:offset]
        return records

    def end(self) -> None:
        """The file ended: fine after the trailer, an error anywhere else."""
        if not self._magic:
            raise DumpError("this is not a k8s-sql dump file")
        if not self._ended:
            raise DumpError("the dump ends before its trailer: it is truncated")

    def _record(self, prefix: bytes, payload: bytes) -> dump_pb2.Record:
        try:
            record = dump_pb2.Record.FromString(payload)
        except Exception as e:
            raise DumpError(f"record {self._records + 1} cannot be decoded ({e}): the dump is damaged") from None
        kind = record.WhichOneof("record")
        if (kind == "header") != (self._records == 0):
            raise DumpError(
                "the dump does not start with its header" if self._records == 0 else "the dump has two headers"
            )
        if kind == "trailer":
            if record.trailer.crc32 != self._crc:
                raise DumpError("the dump's checksum does not match its contents: the dump is damaged")
            self._ended = True
        else:
            self._crc = zlib.crc32(payload, zlib.crc32(prefix, self._crc))
        self._records += 1
        return record


def _decode_varint(buffer: bytearray, offset: int) -> tuple[int, int] | None:
    """The varint at ``offset`` and where it ends, or ``None`` if it is not all there yet."""
    value = shift = 0
    for position in range(offset, min(len(buffer), offset + 10)):
        byte = buffer[position]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position + 1
        shift += 7
    if len(buffer) - offset >= 10:
        raise DumpError("a record's length is not a valid varint: the dump is damaged")
    return None
