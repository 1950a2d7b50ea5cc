"""Dump files as either end of a copy: ``DumpWriter`` writes one, ``DumpReader`` reads one.

The format is ``k8s_sql.migrate.dumpformat``'s.  File I/O (and gzip) runs in the reactor's
thread pool, one call at a time, so the reactor never waits for the disk.  A writer fills
``PATH.partial`` and renames it to ``PATH`` only once the trailer is written and synced,
so a dump that exists is complete.  ``-`` stands for standard output or input.
"""

from __future__ import annotations

import gzip
import os
import sys
import zlib
from collections import deque
from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar

from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer

from k8s_sql import __version__
from k8s_sql.etcd.convert import kv_of
from k8s_sql.migrate.dumpformat import (
    MAGIC,
    DumpError,
    RecordReader,
    frame,
    header_record,
    kv_record,
    lease_of,
    lease_record,
    snapshot_header,
)
from k8s_sql.migrate.interfaces import ISnapshotSink, ISnapshotSource
from k8s_sql.migrate.snapshot import Batch, SnapshotHeader
from k8s_sql.proto import dump_pb2
from k8s_sql.store.model import KeyValue, LeaseTimeToLive

T = TypeVar("T")

#: How much of a dump is read at a time.
CHUNK = 1024 * 1024

#: What the header says wrote the file.
PRODUCER = f"k8s-sql {__version__}"

STANDARD_STREAM = "-"

#: What a gzip-compressed file starts with.
GZIP_MAGIC = b"\x1f\x8b"


class _Blocking:
    """Runs a file's blocking calls in the reactor's thread pool."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor

    async def __call__(self, function: Callable[..., T], *args: Any) -> T:
        return await deferToThreadPool(self._reactor, self._reactor.getThreadPool(), function, *args)


def is_dump(path: str) -> bool:
    """Whether the file at ``path`` starts as a dump does (or as a gzip-compressed file)."""
    with open(path, "rb") as file:
        start = file.read(len(MAGIC))
    return start == MAGIC or start.startswith(GZIP_MAGIC)


@implementer(ISnapshotSink)
class DumpWriter:
    """Writes a snapshot to ``path`` (gzip-compressed when it ends in ``.gz``).

    An existing file is refused unless ``replace``.
    """

    def __init__(self, path: str, reactor: Any, *, replace: bool = False) -> None:
        self.path = path
        self._blocking = _Blocking(reactor)
        self._replace = replace
        self._partial = f"{path}.partial"
        self._raw: BinaryIO | None = None
        self._file: BinaryIO | gzip.GzipFile | None = None
        self._crc = 0
        self._keys = 0
        self._leases = 0

    async def begin(self, header: SnapshotHeader) -> None:
        """Create the file and write the header."""
        self._raw, self._file = await self._blocking(self._create)
        await self._write([header_record(header, PRODUCER)])

    async def add(self, batch: Batch) -> None:
        """Write the batch's leases, then its keys."""
        self._leases += len(batch.leases)
        self._keys += len(batch.kvs)
        await self._write([lease_record(lease) for lease in batch.leases] + [kv_record(kv) for kv in batch.kvs])

    async def finish(self) -> None:
        """Write the trailer, sync, close and give the file its name."""
        trailer = dump_pb2.Record(trailer=dump_pb2.Trailer(keys=self._keys, leases=self._leases, crc32=self._crc))
        await self._write([trailer])
        await self._blocking(self._complete)

    async def discard(self) -> None:
        """Give up a dump that failed: close it and remove what was written."""
        if self._raw is not None:
            await self._blocking(self._remove)

    async def _write(self, records: list[dump_pb2.Record]) -> None:
        data = b"".join(frame(record) for record in records)
        self._crc = zlib.crc32(data, self._crc)
        assert self._file is not None, "begin() opens the file"
        await self._blocking(self._file.write, data)

    def _create(self) -> tuple[BinaryIO, BinaryIO | gzip.GzipFile]:
        if self.path == STANDARD_STREAM:
            raw: BinaryIO = sys.stdout.buffer
        else:
            if not self._replace and os.path.exists(self.path):
                raise FileExistsError(f"{self.path} exists; use --force to replace it")
            raw = open(self._partial, "wb")  # noqa: SIM115 (closed by close())
        compressed = self.path.endswith(".gz")
        file = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) if compressed else raw
        file.write(MAGIC)
        self._crc = zlib.crc32(MAGIC)
        return raw, file

    def _complete(self) -> None:
        assert self._raw is not None and self._file is not None
        if self._file is not self._raw:
            self._file.close()  # the gzip trailer; the underlying file stays open
        self._raw.flush()
        if self.path != STANDARD_STREAM:
            os.fsync(self._raw.fileno())
            self._raw.close()
            os.replace(self._partial, self.path)

    def _remove(self) -> None:
        if self.path != STANDARD_STREAM and self._raw is not None:
            self._raw.close()
            os.unlink(self._partial)


@implementer(ISnapshotSource)
class DumpReader:
    """Reads a snapshot from the dump at ``path`` (compressed or not), checking it as it goes.

    Batches hold up to ``batch_keys`` keys or about ``batch_bytes`` of keys and values.
    """

    def __init__(self, path: str, reactor: Any, *, batch_keys: int = 1000, batch_bytes: int = 4 * 1024 * 1024) -> None:
        self.path = path
        self.description = f"dump {path}"
        self._blocking = _Blocking(reactor)
        self._batch_keys = batch_keys
        self._batch_bytes = batch_bytes
        self._file: BinaryIO | gzip.GzipFile | None = None
        self._reader = RecordReader()
        self._records: deque[dump_pb2.Record] = deque()
        self._header: SnapshotHeader | None = None
        self._last_key: bytes | None = None
        self._keys = 0
        self._leases = 0
        self._ended = False

    async def open(self, revision: int = 0) -> SnapshotHeader:
        """Open the file and read its header; ``revision`` must be 0 or the dump's."""
        await self.close()
        self._file = await self._blocking(self._open)
        self._reader = RecordReader()
        self._records.clear()
        self._last_key, self._keys, self._leases, self._ended = None, 0, 0, False
        record = await self._next_record()
        self._header = snapshot_header(record.header)
        if revision and revision != self._header.revision:
            raise DumpError(f"the dump holds revision {self._header.revision}, not {revision}")
        return self._header

    async def read(self) -> Batch | None:
        """The next batch of leases and keys, or ``None`` once the trailer was checked."""
        leases: list[LeaseTimeToLive] = []
        kvs: list[KeyValue] = []
        size = 0
        while not self._ended and len(kvs) < self._batch_keys and size < self._batch_bytes:
            record = await self._next_record()
            kind = record.WhichOneof("record")
            if kind == "lease":
                leases.append(lease_of(record.lease))
                self._leases += 1
            elif kind == "kv":
                kv = kv_of(record.kv)
                if self._last_key is not None and kv.key <= self._last_key:
                    raise DumpError(f"key {kv.key!r} is out of order: the dump is damaged")
                self._last_key = kv.key
                kvs.append(kv)
                self._keys += 1
                size += len(kv.key) + len(kv.value)
            else:
                await self._check_end(record.trailer)
        if self._ended and not (leases or kvs):
            await self.close()
            return None
        return Batch(tuple(leases), tuple(kvs))

    async def close(self) -> None:
        """Close the file (reading ends by itself at the trailer)."""
        file, self._file = self._file, None
        if file is not None and self.path != STANDARD_STREAM:
            await self._blocking(file.close)

    async def _check_end(self, trailer: dump_pb2.Trailer) -> None:
        """The trailer must count what was read, and end the file."""
        if (trailer.keys, trailer.leases) != (self._keys, self._leases):
            raise DumpError(
                f"the dump's trailer counts {trailer.keys} keys and {trailer.leases} leases,"
                f" but {self._keys} keys and {self._leases} leases were read: the dump is damaged"
            )
        assert self._file is not None
        if self._records or self._reader.feed(await self._blocking(self._file.read, CHUNK)):
            raise DumpError("the dump has data after its trailer")
        self._ended = True

    async def _next_record(self) -> dump_pb2.Record:
        while not self._records:
            assert self._file is not None, "open() opens the file"
            data = await self._blocking(self._file.read, CHUNK)
            if not data:
                self._reader.end()
            self._records.extend(self._reader.feed(data))
        return self._records.popleft()

    def _open(self) -> BinaryIO | gzip.GzipFile:
        raw: Any = sys.stdin.buffer if self.path == STANDARD_STREAM else open(self.path, "rb")  # noqa: SIM115
        if raw.peek(2)[:2] == GZIP_MAGIC:
            return gzip.GzipFile(fileobj=raw, mode="rb")
        return raw
