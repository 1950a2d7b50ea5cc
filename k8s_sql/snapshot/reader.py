"""Reading a bbolt database file a page at a time, checking every page it reads.

``BoltReader`` picks the current meta page as bbolt does (the valid one with the higher
transaction id), then walks buckets' B+trees depth first with ``os.pread``: memory holds
one page per tree level, whatever the file's size.  Anything that cannot be a bbolt
database (wrong magic, a checksum that does not match, a page outside the file, a page of
the wrong kind, elements outside their page, keys out of order, a tree too deep) raises
``SnapshotError`` with one line saying what is wrong.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from k8s_sql.snapshot.bbolt import (
    BRANCH_PAGE,
    BUCKET_HEADER,
    BUCKET_LEAF,
    LEAF_PAGE,
    PAGE_HEADER,
    PAGE_SIZE,
    Meta,
    PageHeader,
    SnapshotError,
    branch_elements,
    leaf_elements,
)

#: No B+tree of a file bbolt can address is deeper: a deeper walk is going round in circles.
MAX_DEPTH = 64


@dataclass(frozen=True, slots=True)
class Bucket:
    """Where a bucket's tree starts: a root page, or (``root`` 0) its inline leaf page."""

    name: bytes
    root: int
    inline: bytes = b""

    @classmethod
    def decode(cls, name: bytes, value: bytes) -> Bucket:
        """The bucket a ``BUCKET_LEAF`` element's ``value`` describes."""
        if len(value) < BUCKET_HEADER.size:
            raise SnapshotError(f"bucket {name!r} has a {len(value)}-byte header: the file is damaged")
        root, _sequence = BUCKET_HEADER.unpack_from(value)
        inline = value[BUCKET_HEADER.size :] if root == 0 else b""
        if root == 0 and len(inline) < PAGE_HEADER.size:
            raise SnapshotError(f"bucket {name!r} has no root page: the file is damaged")
        return cls(name, root, inline)


#: What a bucket holds under a key: a value, or a nested bucket.
Entry = tuple[bytes, "bytes | Bucket"]


class BoltReader:
    """The bbolt database in the first ``size`` bytes of ``file`` (the rest, such as an etcd
    snapshot's sha256 trailer, is not looked at).

    ``file`` must be a real file (``fileno``); it is read with ``os.pread`` and never moved.
    """

    def __init__(self, file: BinaryIO, size: int) -> None:
        self._fd = file.fileno()
        self._size = size
        #: The current meta page.
        self.meta = self._current_meta()
        self.page_size = self.meta.page_size
        if self.meta.high_water * self.page_size > size:
            raise SnapshotError(
                f"the file is truncated: its meta page counts {self.meta.high_water} pages of"
                f" {self.page_size} bytes, but it holds {size} bytes"
            )
        if not 2 <= self.meta.root < self.meta.high_water:
            raise SnapshotError(f"the meta page puts the root bucket at page {self.meta.root}: the file is damaged")

    def root(self) -> Bucket:
        """The root bucket, whose entries are the top-level buckets."""
        return Bucket(b"", self.meta.root)

    def entries(self, bucket: Bucket) -> Iterator[Entry]:
        """Every key of ``bucket`` in ascending order, with its value or nested ``Bucket``."""
        previous: bytes | None = None
        for flags, key, value in self._leaf_elements(bucket):
            if previous is not None and key <= previous:
                raise SnapshotError(f"bucket {bucket.name!r}: keys out of order: the file is damaged")
            previous = key
            yield (key, Bucket.decode(key, value)) if flags & BUCKET_LEAF else (key, value)

    def bucket(self, parent: Bucket, name: bytes) -> Bucket | None:
        """The nested bucket ``name`` of ``parent``, or ``None``; fails if ``name`` holds a value."""
        for key, value in self.entries(parent):
            if key == name:
                if not isinstance(value, Bucket):
                    raise SnapshotError(f"{name!r} is a value, not a bucket")
                return value
            if key > name:
                return None
        return None

    def _leaf_elements(self, bucket: Bucket) -> Iterator[tuple[int, bytes, bytes]]:
        """The leaf elements of ``bucket``'s tree, depth first."""
        if bucket.root == 0:
            header = PageHeader.decode(bucket.inline)
            if header.flags != LEAF_PAGE:
                raise SnapshotError(f"bucket {bucket.name!r}: its inline page is not a leaf: the file is damaged")
            yield from leaf_elements(bucket.inline, header, f"bucket {bucket.name!r}")
            return
        stack = [iter([(b"", bucket.root)])]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                stack.pop()
                continue
            if len(stack) > MAX_DEPTH:
                raise SnapshotError(f"bucket {bucket.name!r} is more than {MAX_DEPTH} levels deep: the file is damaged")
            header, page = self._page(child[1])
            where = f"page {header.id}"
            if header.flags == LEAF_PAGE:
                yield from leaf_elements(page, header, where)
            elif header.flags == BRANCH_PAGE:
                stack.append(iter(branch_elements(page, header, where)))
            else:
                raise SnapshotError(
                    f"{where} of bucket {bucket.name!r} is not a branch or leaf page: the file is damaged"
                )

    def _page(self, page_id: int) -> tuple[PageHeader, bytes]:
        """Page ``page_id`` with its overflow pages, checked to be where its header says."""
        if not 2 <= page_id < self.meta.high_water:
            raise SnapshotError(
                f"a bucket refers to page {page_id}, outside the database's {self.meta.high_water} pages:"
                " the file is damaged"
            )
        page = self._read(page_id * self.page_size, self.page_size)
        header = PageHeader.decode(page)
        if header.id != page_id:
            raise SnapshotError(f"page {page_id} says it is page {header.id}: the file is damaged")
        if header.overflow:
            if page_id + header.overflow >= self.meta.high_water:
                raise SnapshotError(f"page {page_id} overflows past the end of the database: the file is damaged")
            page += self._read((page_id + 1) * self.page_size, header.overflow * self.page_size)
        return header, page

    def _read(self, offset: int, length: int) -> bytes:
        data = os.pread(self._fd, length, offset)
        if len(data) < length or offset + length > self._size:
            raise SnapshotError(f"the file ends in the middle of page {offset // self.page_size}: it is truncated")
        return data

    def _current_meta(self) -> Meta:
        """The meta page bbolt would use: of the two, the valid one with the higher
        transaction id.  Page 1 is looked for at the page size page 0 gives, even when page
        0 fails its checksum."""
        first = os.pread(self._fd, PAGE_SIZE, 0)
        claimed = int.from_bytes(first[PAGE_HEADER.size + 8 : PAGE_HEADER.size + 12], "little")
        page_size = claimed if _plausible(claimed) else PAGE_SIZE
        metas, failures = [], []
        for page in (first, os.pread(self._fd, page_size, page_size)):
            try:
                metas.append(Meta.decode(page))
            except SnapshotError as error:
                failures.append(error)
        if not metas:
            raise failures[0]
        meta = max(metas, key=lambda meta: meta.txid)
        if not _plausible(meta.page_size):
            raise SnapshotError(f"the meta page gives page size {meta.page_size}: the file is damaged")
        return meta


def _plausible(page_size: int) -> bool:
    """Whether ``page_size`` can be a bbolt page size: a power of two from 512 bytes to 1 MiB."""
    return 512 <= page_size <= 1 << 20 and not page_size & (page_size - 1)
