"""Helpers of the snapshot tests: bbolt files as nested dicts, and what ``etcdutl snapshot
status`` computes, computed independently of etcd."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Union

import crc32c

from k8s_sql.snapshot import writer
from k8s_sql.snapshot.bbolt import BRANCH_PAGE, PageHeader, branch_elements
from k8s_sql.snapshot.reader import BoltReader, Bucket
from tests.processes import ETCD_BIN

ETCDUTL = str(ETCD_BIN / "etcdutl")

#: A bucket's contents: values, or nested buckets as dicts.
Tree = dict[bytes, Union[bytes, "Tree"]]


def to_bucket(tree: Tree) -> writer.Bucket:
    """The writer's form of ``tree``: entries in key order."""
    return writer.Bucket(
        [(key, to_bucket(value) if isinstance(value, dict) else value) for key, value in sorted(tree.items())]
    )


def write(path: Path, tree: Tree, page_size: int = 4096) -> int:
    """Write the database whose root bucket holds ``tree``; its size."""
    with open(path, "wb") as file:
        return writer.BoltWriter(file, page_size).write(to_bucket(tree))


def read(path: Path, size: int | None = None) -> Tree:
    """The whole database at ``path`` as a tree, read with k8s-sql's reader."""
    with open(path, "rb") as file:
        reader = BoltReader(file, os.path.getsize(path) if size is None else size)
        return _tree(reader, reader.root())


def _tree(reader: BoltReader, bucket: Bucket) -> Tree:
    return {key: _tree(reader, value) if isinstance(value, Bucket) else value for key, value in reader.entries(bucket)}


def pages_in_use(path: Path) -> list[int]:
    """Every page id the trees of the database use (overflow pages included), as bbolt's
    consistency check collects them, in the order met."""
    with open(path, "rb") as file:
        reader = BoltReader(file, os.path.getsize(path))
        used: list[int] = []
        _collect(reader, file.fileno(), reader.root(), used)
        return used


def _collect(reader: BoltReader, fd: int, bucket: Bucket, used: list[int]) -> None:
    if bucket.root:
        _collect_page(fd, reader.page_size, bucket.root, used)
    for _, value in reader.entries(bucket):
        if isinstance(value, Bucket):
            _collect(reader, fd, value, used)


def _collect_page(fd: int, page_size: int, page_id: int, used: list[int]) -> None:
    header = PageHeader.decode(os.pread(fd, page_size, page_id * page_size))
    used.extend(range(page_id, page_id + header.overflow + 1))
    if header.flags == BRANCH_PAGE:
        page = os.pread(fd, (header.overflow + 1) * page_size, page_id * page_size)
        for _, child in branch_elements(page, header, f"page {page_id}"):
            _collect_page(fd, page_size, child, used)


def etcdutl_status(path: Path) -> dict[str, Any]:
    """What ``etcdutl snapshot status`` (3.5.1, bbolt 1.3.6) reports, after bbolt's own
    consistency check of the whole file."""
    result = subprocess.run([ETCDUTL, "snapshot", "status", str(path), "-w", "json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def expected_status(tree: Tree, size: int) -> dict[str, Any]:
    """``etcdutl snapshot status`` computed from ``tree``: a CRC-32C of every top-level bucket's
    name and entries (a nested bucket's value counts as empty), their number, the last
    revision of the ``key`` bucket, the database's size."""
    checksum, keys, revision = 0, 0, 0
    for name, bucket in sorted(tree.items()):
        assert isinstance(bucket, dict)
        checksum = crc32c.crc32c(name, checksum)
        for key, value in sorted(bucket.items()):
            checksum = crc32c.crc32c(key + (b"" if isinstance(value, dict) else value), checksum)
            keys += 1
            if name == b"key":
                revision = int.from_bytes(key[:8], "big")
    return {"hash": checksum, "revision": revision, "totalKey": keys, "totalSize": size}

