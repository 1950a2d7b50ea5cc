"""bbolt's file format (version 2, as bbolt 1.3 writes it for etcd 3.5): pages in, pages out.

A bbolt database is a sequence of pages of ``page_size`` bytes, each starting with a
16-byte header (id, flags, element count, overflow: how many pages follow it as part of
it).  Pages 0 and 1 are meta pages (the database's root bucket, free list and size, with
an FNV-64a checksum); the one with the higher transaction id that checks out is current.
A bucket is a B+tree: branch pages hold (first key, child page) elements, leaf pages
(flags, key, value) elements, all in ascending key order.  A leaf element flagged
``BUCKET_LEAF`` is a nested bucket: its value is a bucket header (root page, sequence) and,
when the root is 0, the bucket's single leaf page itself ("inline").  Integers are
little-endian, as on the machines etcd runs on.

This module only encodes and decodes pages; ``k8s_sql.snapshot.writer`` and
``k8s_sql.snapshot.reader`` walk trees of them.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

#: What the meta pages of a bbolt database start with.
MAGIC = 0xED0CDAED
#: The file format version.
VERSION = 2
#: The page size etcd's files use (the operating system's page size on Linux).
PAGE_SIZE = 4096

BRANCH_PAGE = 0x01
LEAF_PAGE = 0x02
META_PAGE = 0x04
FREELIST_PAGE = 0x10
#: A leaf element holding a nested bucket.
BUCKET_LEAF = 0x01
#: The free-list page id of a database that keeps no free list.
NO_FREELIST = 0xFFFF_FFFF_FFFF_FFFF
#: A page's element count is 16 bits; a free list of at least this many ids stores its
#: count in its first id slot instead.
COUNT_OVERFLOW = 0xFFFF

PAGE_HEADER = struct.Struct("<QHHI")
LEAF_ELEMENT = struct.Struct("<IIII")
BRANCH_ELEMENT = struct.Struct("<IIQ")
BUCKET_HEADER = struct.Struct("<QQ")
#: A meta page's fields before its checksum: magic, version, page size, flags, root bucket
#: (root page, sequence), free-list page, high-water mark (page count) and transaction id.
_META = struct.Struct("<IIIIQQQQQ")
_CHECKSUM = struct.Struct("<Q")

#: Elements of either kind take 16 bytes.
ELEMENT_SIZE = LEAF_ELEMENT.size

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK = 0xFFFF_FFFF_FFFF_FFFF


class SnapshotError(Exception):
    """A file that is not an intact bbolt database or etcd snapshot; the message says why."""


def fnv64a(data: bytes) -> int:
    """The 64-bit FNV-1a hash, bbolt's meta page checksum."""
    value = _FNV_OFFSET
    for byte in data:
        value = ((value ^ byte) * _FNV_PRIME) & _MASK
    return value


@dataclass(frozen=True, slots=True)
class PageHeader:
    """The header every page starts with."""

    id: int
    flags: int
    count: int
    overflow: int

    @classmethod
    def decode(cls, data: bytes | memoryview) -> PageHeader:
        """The header at the start of ``data``."""
        return cls(*PAGE_HEADER.unpack_from(data))


@dataclass(frozen=True, slots=True)
class Meta:
    """A meta page: where the root bucket and free list are, how many pages the file has.

    ``high_water`` is the number of pages in use (bbolt's ``pgid``): the file's size is
    ``high_water * page_size``.
    """

    page_size: int
    root: int
    freelist: int
    high_water: int
    txid: int
    sequence: int = 0
    flags: int = 0

    def encode(self, page_id: int) -> bytes:
        """Meta page ``page_id`` (0 or 1), checksum included, padded to a whole page."""
        fields = _META.pack(
            MAGIC,
            VERSION,
            self.page_size,
            self.flags,
            self.root,
            self.sequence,
            self.freelist,
            self.high_water,
            self.txid,
        )
        body = fields + _CHECKSUM.pack(fnv64a(fields))
        return encode_page(page_id, META_PAGE, 0, body, self.page_size)

    @classmethod
    def decode(cls, page: bytes) -> Meta:
        """The meta page ``page`` holds; ``SnapshotError`` unless magic, version and checksum check out."""
        if len(page) < PAGE_HEADER.size + _META.size + _CHECKSUM.size:
            raise SnapshotError("the file is too short to be a bbolt database")
        fields = page[PAGE_HEADER.size : PAGE_HEADER.size + _META.size]
        magic, version, page_size, flags, root, sequence, freelist, high_water, txid = _META.unpack(fields)
        if magic != MAGIC:
            raise SnapshotError("not a bbolt database (etcd snapshot): wrong magic number")
        if version != VERSION:
            raise SnapshotError(f"bbolt format version {version} is not supported (only {VERSION})")
        (checksum,) = _CHECKSUM.unpack_from(page, PAGE_HEADER.size + _META.size)
        if checksum != fnv64a(fields):
            raise SnapshotError("a meta page's checksum does not match: the file is damaged")
        return cls(page_size, root, freelist, high_water, txid, sequence, flags)


def encode_page(page_id: int, flags: int, count: int, body: bytes, page_size: int) -> bytes:
    """A page with ``body`` after its header, zero-padded to whole pages (overflow as needed)."""
    size = PAGE_HEADER.size + len(body)
    pages = -(-size // page_size)
    return PAGE_HEADER.pack(page_id, flags, count, pages - 1) + body + bytes(pages * page_size - size)


def leaf_size(key: bytes, value: bytes) -> int:
    """The bytes one leaf element takes in its page."""
    return ELEMENT_SIZE + len(key) + len(value)


def leaf_body(entries: Sequence[tuple[bytes, bytes, int]]) -> bytes:
    """A leaf page's elements and data for (key, value, flags) ``entries`` in key order.

    An element's ``pos`` is the distance from the element to its key, as bbolt counts it.
    """
    elements: list[bytes] = []
    data: list[bytes] = []
    offset = len(entries) * ELEMENT_SIZE
    for index, (key, value, flags) in enumerate(entries):
        elements.append(LEAF_ELEMENT.pack(flags, offset - index * ELEMENT_SIZE, len(key), len(value)))
        data += (key, value)
        offset += len(key) + len(value)
    return b"".join(elements + data)


def branch_body(entries: Sequence[tuple[bytes, int]]) -> bytes:
    """A branch page's elements and data for (first key, child page) ``entries`` in key order."""
    elements: list[bytes] = []
    data: list[bytes] = []
    offset = len(entries) * ELEMENT_SIZE
    for index, (key, child) in enumerate(entries):
        elements.append(BRANCH_ELEMENT.pack(offset - index * ELEMENT_SIZE, len(key), child))
        data.append(key)
        offset += len(key)
    return b"".join(elements + data)


def freelist_body(ids: Sequence[int]) -> tuple[int, bytes]:
    """A free-list page's count field and body for the free page ``ids``."""
    if len(ids) < COUNT_OVERFLOW:
        return len(ids), struct.pack(f"<{len(ids)}Q", *ids)
    return COUNT_OVERFLOW, struct.pack(f"<{len(ids) + 1}Q", len(ids), *ids)


def leaf_elements(page: bytes | memoryview, header: PageHeader, where: str) -> list[tuple[int, bytes, bytes]]:
    """The (flags, key, value) elements of the leaf page ``page`` (``where`` names it in errors)."""
    _check_count(page, header, where)
    elements = []
    for index in range(header.count):
        at = PAGE_HEADER.size + index * ELEMENT_SIZE
        flags, pos, key_size, value_size = LEAF_ELEMENT.unpack_from(page, at)
        start = at + pos
        end = start + key_size + value_size
        if end > len(page):
            raise SnapshotError(f"{where}: element {index} lies outside its page: the file is damaged")
        elements.append((flags, bytes(page[start : start + key_size]), bytes(page[start + key_size : end])))
    return elements


def branch_elements(page: bytes | memoryview, header: PageHeader, where: str) -> list[tuple[bytes, int]]:
    """The (first key, child page) elements of the branch page ``page``."""
    _check_count(page, header, where)
    elements = []
    for index in range(header.count):
        at = PAGE_HEADER.size + index * ELEMENT_SIZE
        pos, key_size, child = BRANCH_ELEMENT.unpack_from(page, at)
        start = at + pos
        if start + key_size > len(page):
            raise SnapshotError(f"{where}: element {index} lies outside its page: the file is damaged")
        elements.append((bytes(page[start : start + key_size]), child))
    return elements


def _check_count(page: bytes | memoryview, header: PageHeader, where: str) -> None:
    if PAGE_HEADER.size + header.count * ELEMENT_SIZE > len(page):
        raise SnapshotError(f"{where}: more elements than its page holds: the file is damaged")
