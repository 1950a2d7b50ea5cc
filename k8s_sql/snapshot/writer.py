"""Writing a bbolt database file in one pass, from buckets whose keys come in ascending order.

Each bucket's B+tree is built bottom up as its keys arrive: a leaf page is written as soon
as the next key would not fit in it, and its first key joins the branch page being filled
one level up, which is written in turn when full.  Memory holds one unfinished page per
tree level, so a bucket of any size streams from a generator to the file.  Pages are
numbered in the order they are written, from page 3: 0 and 1 are the meta pages and 2 the
(empty) free list, written last, once the root bucket's page is known.  A bucket that ends
up as a single small leaf with no nested bucket is stored inline in its parent's leaf, as
bbolt does.  The file written has no free page, so ``bbolt check`` and etcd find every
page in use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

from k8s_sql.snapshot.bbolt import (
    BRANCH_PAGE,
    BUCKET_HEADER,
    BUCKET_LEAF,
    ELEMENT_SIZE,
    FREELIST_PAGE,
    LEAF_PAGE,
    PAGE_HEADER,
    PAGE_SIZE,
    Meta,
    branch_body,
    encode_page,
    freelist_body,
    leaf_body,
    leaf_size,
)

#: The free list's page.
FREELIST_ID = 2
#: The transaction id of the current meta page; the other meta page gets one less, as in
#: the files bbolt's ``Tx.WriteTo`` (etcd's snapshot) writes.
TXID = 2


@dataclass
class Bucket:
    """A bucket to write: (key, value or nested ``Bucket``) entries in strictly ascending key order.

    ``entries`` may be a generator: it is consumed once, as the bucket is written.
    """

    entries: Iterable[tuple[bytes, bytes | Bucket]] = field(default_factory=list)


class _Pages:
    """Appends pages to the file from page ``first`` on, numbering them in order."""

    def __init__(self, file: BinaryIO, page_size: int, first: int) -> None:
        self.file = file
        self.page_size = page_size
        #: The next page's id, which is also how many pages precede it.
        self.next = first
        file.seek(first * page_size)

    def write(self, flags: int, count: int, body: bytes) -> int:
        """Write a page (and its overflow pages) after the last one; its id."""
        page_id = self.next
        page = encode_page(page_id, flags, count, body, self.page_size)
        self.file.write(page)
        self.next += len(page) // self.page_size
        return page_id


class _Level:
    """The unfinished branch page of one level of a tree, and how many of its pages were written."""

    def __init__(self) -> None:
        self.elements: list[tuple[bytes, int]] = []
        self.size = PAGE_HEADER.size
        self.written = 0


class _Tree:
    """One bucket's B+tree, built bottom up from keys in ascending order."""

    def __init__(self, pages: _Pages, inline_limit: int) -> None:
        self._pages = pages
        self._inline_limit = inline_limit
        self._leaf: list[tuple[bytes, bytes, int]] = []
        self._leaf_size = PAGE_HEADER.size
        self._leaves_written = 0
        #: The branch levels, from the one above the leaves up.
        self._levels: list[_Level] = []
        self._nested = False
        self._last: bytes | None = None

    def add(self, key: bytes, value: bytes, flags: int = 0) -> None:
        """Add the next key; ``flags`` ``BUCKET_LEAF`` for a nested bucket's header."""
        if not key:
            raise ValueError("bbolt keys cannot be empty")
        if self._last is not None and key <= self._last:
            raise ValueError(f"key {key!r} is not above the previous key {self._last!r}")
        self._last = key
        self._nested = self._nested or bool(flags & BUCKET_LEAF)
        size = leaf_size(key, value)
        if self._leaf and self._leaf_size + size > self._pages.page_size:
            self._write_leaf()
        self._leaf.append((key, value, flags))
        self._leaf_size += size

    def finish(self, inline: bool) -> bytes:
        """Write what is left; the bucket's value in its parent (header, plus the page if ``inline``).

        ``inline`` allows a small single-leaf bucket without nested buckets to be stored
        in its parent, as bbolt stores it.
        """
        if not self._leaves_written:
            if inline and not self._nested and self._leaf_size <= self._inline_limit:
                page = PAGE_HEADER.pack(0, LEAF_PAGE, len(self._leaf), 0) + leaf_body(self._leaf)
                return BUCKET_HEADER.pack(0, 0) + page
            return BUCKET_HEADER.pack(self._pages.write(LEAF_PAGE, len(self._leaf), leaf_body(self._leaf)), 0)
        self._write_leaf()
        for height, level in enumerate(self._levels):
            if height == len(self._levels) - 1 and not level.written and len(level.elements) == 1:
                return BUCKET_HEADER.pack(level.elements[0][1], 0)
            self._write_branch(height)
        raise AssertionError("the top level always ends with one element")

    def _write_leaf(self) -> None:
        page_id = self._pages.write(LEAF_PAGE, len(self._leaf), leaf_body(self._leaf))
        self._leaves_written += 1
        self._add_child(0, self._leaf[0][0], page_id)
        self._leaf, self._leaf_size = [], PAGE_HEADER.size

    def _add_child(self, height: int, key: bytes, page_id: int) -> None:
        if height == len(self._levels):
            self._levels.append(_Level())
        level = self._levels[height]
        size = ELEMENT_SIZE + len(key)
        if level.elements and level.size + size > self._pages.page_size:
            self._write_branch(height)
        level.elements.append((key, page_id))
        level.size += size

    def _write_branch(self, height: int) -> None:
        level = self._levels[height]
        elements = level.elements
        page_id = self._pages.write(BRANCH_PAGE, len(elements), branch_body(elements))
        level.elements, level.size = [], PAGE_HEADER.size
        level.written += 1
        self._add_child(height + 1, elements[0][0], page_id)


class BoltWriter:
    """Writes one bbolt database to ``file`` (seekable, opened for writing, empty).

    ``page_size`` is the database's page size; etcd uses the system's, 4096 bytes.
    """

    def __init__(self, file: BinaryIO, page_size: int = PAGE_SIZE) -> None:
        self._file = file
        self._page_size = page_size
        self._pages = _Pages(file, page_size, FREELIST_ID + 1)

    def write(self, root: Bucket) -> int:
        """Write the database whose root bucket is ``root`` (its entries must all be buckets);
        the file's size in bytes."""
        tree = _Tree(self._pages, self._page_size // 4)
        for name, bucket in root.entries:
            if not isinstance(bucket, Bucket):
                raise ValueError(f"the root bucket holds only buckets, not the value under {name!r}")
            tree.add(name, self._bucket(bucket), BUCKET_LEAF)
        (root_page, _) = BUCKET_HEADER.unpack(tree.finish(inline=False))
        count, body = freelist_body([])
        self._file.seek(FREELIST_ID * self._page_size)
        self._file.write(encode_page(FREELIST_ID, FREELIST_PAGE, count, body, self._page_size))
        meta = Meta(self._page_size, root_page, FREELIST_ID, self._pages.next, TXID)
        self._file.seek(0)
        self._file.write(meta.encode(0) + dataclasses.replace(meta, txid=TXID - 1).encode(1))
        return self._pages.next * self._page_size

    def _bucket(self, bucket: Bucket) -> bytes:
        """Write a nested bucket; its value in its parent."""
        tree = _Tree(self._pages, self._page_size // 4)
        for key, value in bucket.entries:
            if isinstance(value, Bucket):
                tree.add(key, self._bucket(value), BUCKET_LEAF)
            else:
                tree.add(key, value)
        return tree.finish(inline=True)
