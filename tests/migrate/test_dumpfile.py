"""Dump files: what is written reads back the same, and a damaged file is never taken for a
good one."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import Any

import pytest

from k8s_sql.migrate.dumpfile import DumpReader, DumpWriter
from k8s_sql.migrate.dumpformat import MAGIC, DumpError, RecordReader, frame, header_record, kv_record
from k8s_sql.migrate.snapshot import Batch, SnapshotHeader
from k8s_sql.proto.wire import varint
from k8s_sql.proto import dump_pb2
from k8s_sql.store.model import KeyValue, LeaseTimeToLive
from tests.migrate.support import Run, call

HEADER = SnapshotHeader(revision=1234, compact_revision=1000, keys=5, source="etcd 127.0.0.1:2379")
BATCHES = [
    Batch((LeaseTimeToLive(7, 3599, 3600), LeaseTimeToLive(8, -1, 60)), (KeyValue(b"\x00", 3, 3, 1, b"\xff\x00"),)),
    Batch((), (KeyValue(b"/a", 5, 1200, 4, b"x" * 100_000, 7), KeyValue(b"/b", 1234, 1234, 1, b"", 8))),
    Batch((LeaseTimeToLive(9, 10, 10),), (KeyValue(b"/c", 9, 9, 1, b"c", 9), KeyValue(b"\xff\xff", 10, 11, 2, b"z"))),
]


def write(run: Run, reactor: Any, path: Path, batches: list[Batch] = BATCHES, **options: Any) -> None:
    async def go() -> None:
        writer = DumpWriter(str(path), reactor, **options)
        await writer.begin(HEADER)
        for batch in batches:
            await writer.add(batch)
        await writer.finish()

    call(run, go)


def read(run: Run, reactor: Any, path: Path, **options: Any) -> tuple[SnapshotHeader, list[Batch]]:
    async def go() -> tuple[SnapshotHeader, list[Batch]]:
        reader = DumpReader(str(path), reactor, **options)
        header = await reader.open()
        batches = []
        while (batch := await reader.read()) is not None:
            batches.append(batch)
        return header, batches

    return call(run, go)


def flatten(batches: list[Batch]) -> tuple[list[LeaseTimeToLive], list[KeyValue]]:
    return [lease for b in batches for lease in b.leases], [kv for b in batches for kv in b.kvs]


@pytest.mark.parametrize("name", ["dump", "dump.gz"])
def test_a_dump_reads_back_as_written(run: Run, reactor: Any, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    write(run, reactor, path)
    assert path.read_bytes().startswith(b"\x1f\x8b" if name.endswith(".gz") else MAGIC)
    header, batches = read(run, reactor, path, batch_keys=2)
    assert header == HEADER
    assert flatten(batches) == flatten(BATCHES)
    assert [len(batch.kvs) for batch in batches] == [2, 2, 1]
    assert not (tmp_path / f"{name}.partial").exists()


def test_batches_are_bounded_by_bytes_too(run: Run, reactor: Any, tmp_path: Path) -> None:
    write(run, reactor, tmp_path / "dump")
    _, batches = read(run, reactor, tmp_path / "dump", batch_bytes=1000)
    assert [len(batch.kvs) for batch in batches] == [2, 3]


def test_the_format_is_the_documented_one(run: Run, reactor: Any, tmp_path: Path) -> None:
    """Magic, varint-delimited records, the header first and a CRC-32 trailer last."""
    write(run, reactor, tmp_path / "dump", BATCHES[:1])
    data = (tmp_path / "dump").read_bytes()
    records, offset = [], len(MAGIC)
    while offset < len(data):
        length, shift = 0, 0
        while True:
            byte = data[offset]
            offset += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        records.append((offset, dump_pb2.Record.FromString(data[offset : offset + length])))
        offset += length
    kinds = [record.WhichOneof("record") for _, record in records]
    assert kinds == ["header", "lease", "lease", "kv", "trailer"]
    header = records[0][1].header
    assert (header.format, header.revision, header.compact_revision, header.keys, header.source) == (1, 1234, 1000, 5, HEADER.source)
    assert header.producer.startswith("k8s-sql ")
    trailer_start = records[-1][0] - 1
    trailer = records[-1][1].trailer
    assert (trailer.keys, trailer.leases, trailer.crc32) == (1, 2, zlib.crc32(data[:trailer_start]))
    assert records[3][1].kv.value == b"\xff\x00"


def test_records_split_anywhere_are_reassembled(run: Run, reactor: Any, tmp_path: Path) -> None:
    write(run, reactor, tmp_path / "dump")
    reader = RecordReader()
    data = (tmp_path / "dump").read_bytes()
    records = [record for i in range(len(data)) for record in reader.feed(data[i : i + 1])]
    assert [record.WhichOneof("record") for record in records].count("kv") == 5


def damaged(path: Path, change: Any) -> None:
    path.write_bytes(change(path.read_bytes()))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda data: data[:-10], "truncated"),
        (lambda data: data[: len(data) // 2], "truncated"),
        (lambda data: data.replace(b"x" * 10, b"y" * 10, 1), "checksum"),
        (lambda data: data + b"\x00", "after its trailer"),
        (lambda data: b"not a dump at all", "not a k8s-sql dump"),
        (lambda data: b"", "not a k8s-sql dump"),
        (lambda data: MAGIC + varint(2**40), "damaged"),
    ],
    ids=["trailer cut", "half", "flipped bytes", "trailing bytes", "no magic", "empty", "huge length"],
)
def test_a_damaged_dump_is_refused(run: Run, reactor: Any, tmp_path: Path, change: Any, message: str) -> None:
    path = tmp_path / "dump"
    write(run, reactor, path)
    damaged(path, change)
    with pytest.raises(DumpError, match=message):
        read(run, reactor, path)


def records_file(path: Path, *records: dump_pb2.Record, trailer: tuple[int, int] | None = None) -> None:
    data = MAGIC + b"".join(frame(record) for record in records)
    if trailer is not None:
        data += frame(dump_pb2.Record(trailer=dump_pb2.Trailer(keys=trailer[0], leases=trailer[1], crc32=zlib.crc32(data))))
    path.write_bytes(data)


def test_dumps_that_break_the_rules_are_refused(run: Run, reactor: Any, tmp_path: Path) -> None:
    path = tmp_path / "dump"
    head = header_record(HEADER, "test")
    cases = [
        ((kv_record(KeyValue(b"a", 1, 1, 1)),), (1, 0), "does not start with its header"),
        ((head, head), (0, 0), "two headers"),
        ((head, kv_record(KeyValue(b"b", 1, 1, 1)), kv_record(KeyValue(b"a", 1, 1, 1))), (2, 0), "out of order"),
        ((head, kv_record(KeyValue(b"a", 1, 1, 1))), (2, 0), "trailer counts 2 keys"),
    ]
    for records, trailer, message in cases:
        records_file(path, *records, trailer=trailer)
        with pytest.raises(DumpError, match=message):
            read(run, reactor, path)
    future = dump_pb2.Record(header=dump_pb2.Header(format=2, revision=5))
    records_file(path, future, trailer=(0, 0))
    with pytest.raises(DumpError, match="format version 2; this k8s-sql reads version 1"):
        read(run, reactor, path)


def test_a_reader_opened_at_another_revision_refuses(run: Run, reactor: Any, tmp_path: Path) -> None:
    write(run, reactor, tmp_path / "dump")
    reader = DumpReader(str(tmp_path / "dump"), reactor)
    assert call(run, reader.open, 1234) == HEADER
    with pytest.raises(DumpError, match="holds revision 1234, not 99"):
        call(run, reader.open, 99)
    call(run, reader.close)


def test_an_existing_file_is_kept_unless_replaced(run: Run, reactor: Any, tmp_path: Path) -> None:
    path = tmp_path / "dump"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        write(run, reactor, path)
    assert path.read_bytes() == b"precious"
    write(run, reactor, path, replace=True)
    assert read(run, reactor, path)[0] == HEADER


def test_an_unfinished_dump_never_takes_the_name_and_is_discarded(run: Run, reactor: Any, tmp_path: Path) -> None:
    path = tmp_path / "dump.gz"
    writer = DumpWriter(str(path), reactor)
    call(run, writer.begin, HEADER)
    call(run, writer.add, BATCHES[0])
    assert not path.exists() and (tmp_path / "dump.gz.partial").exists()
    call(run, writer.discard)
    assert os.listdir(tmp_path) == []


def test_gzip_is_detected_whatever_the_name(run: Run, reactor: Any, tmp_path: Path) -> None:
    write(run, reactor, tmp_path / "dump.gz")
    (tmp_path / "renamed").write_bytes((tmp_path / "dump.gz").read_bytes())
    assert gzip.decompress((tmp_path / "renamed").read_bytes()).startswith(MAGIC)
    assert flatten(read(run, reactor, tmp_path / "renamed")[1]) == flatten(BATCHES)
