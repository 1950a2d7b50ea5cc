"""Damaged and truncated files are refused by the reader, each with one line saying why."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from k8s_sql.snapshot.bbolt import (
    BRANCH_PAGE,
    LEAF_PAGE,
    PAGE_HEADER,
    Meta,
    SnapshotError,
    branch_body,
    encode_page,
    leaf_body,
)
from k8s_sql.snapshot.digest import verify_digest
from k8s_sql.snapshot.layout import EtcdSnapshot, revision_key
from k8s_sql.snapshot.reader import BoltReader
from tests.snapshot.support import read, write

PAGE = 1024


@pytest.fixture
def written(tmp_path: Path) -> tuple[Path, Meta]:
    """A database with a three-level tree in bucket ``b``, and its meta page."""
    path = tmp_path / "bolt.db"
    write(path, {b"b": {b"%05d" % n: b"v" * 20 for n in range(3000)}}, PAGE)
    return path, Meta.decode(path.read_bytes()[:PAGE])


def damage(path: Path, offset: int, data: bytes) -> None:
    content = bytearray(path.read_bytes())
    content[offset : offset + len(data)] = data
    path.write_bytes(bytes(content))


def refused(path: Path, size: int | None = None) -> str:
    with pytest.raises(SnapshotError) as raised:
        read(path, size)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_a_file_that_is_no_bbolt_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "text"
    path.write_bytes(b"hello world\n" * 1000)
    assert "wrong magic number" in refused(path)
    (tmp_path / "short").write_bytes(b"x")
    assert "too short" in refused(tmp_path / "short")


def test_both_meta_pages_wrong_is_refused_one_is_tolerated(written: tuple[Path, Meta]) -> None:
    path, _ = written
    whole = read(path)
    damage(path, 16 + 24, b"\xff")  # a field of meta page 0: its checksum no longer matches
    assert read(path) == whole  # bbolt falls back on meta page 1, and so does the reader
    damage(path, PAGE + 16 + 24, b"\xff")
    assert "checksum does not match" in refused(path)
    damage(path, 16, b"\x00\x00\x00\x00")
    damage(path, PAGE + 16, b"\x00\x00\x00\x00")
    assert "wrong magic number" in refused(path)


@pytest.mark.parametrize("pages", [1, 2, 5, -1])
def test_a_truncated_file_is_refused(written: tuple[Path, Meta], pages: int) -> None:
    path, meta = written
    cut = (pages if pages > 0 else meta.high_water + pages) * PAGE
    path.write_bytes(path.read_bytes()[:cut])
    assert "truncated" in refused(path)


def test_a_file_cut_in_the_middle_of_a_page_is_refused(written: tuple[Path, Meta]) -> None:
    path, meta = written
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2 + 100])
    assert "truncated" in refused(path)


def test_a_page_that_is_not_where_it_says_is_refused(written: tuple[Path, Meta]) -> None:
    path, meta = written
    damage(path, meta.root * PAGE, (meta.root + 1).to_bytes(8, "little"))
    assert f"page {meta.root} says it is page {meta.root + 1}" in refused(path)


def test_a_reference_outside_the_file_is_refused(written: tuple[Path, Meta]) -> None:
    path, meta = written
    damage(path, 3 * PAGE, encode_page(3, BRANCH_PAGE, 1, branch_body([(b"0", 10**6)]), PAGE))
    assert "outside the database's" in refused(path)


def test_a_page_of_the_wrong_kind_is_refused(written: tuple[Path, Meta]) -> None:
    path, _ = written
    damage(path, 3 * PAGE + 8, (0x10).to_bytes(2, "little"))
    assert refused(path).startswith("page 3 of bucket b'b' is not a branch or leaf page")


def test_an_element_outside_its_page_is_refused(written: tuple[Path, Meta]) -> None:
    path, _ = written
    damage(path, 3 * PAGE + PAGE_HEADER.size + 4, (PAGE * 2).to_bytes(4, "little"))
    assert "outside its page" in refused(path)


def test_more_elements_than_a_page_holds_are_refused(written: tuple[Path, Meta]) -> None:
    path, _ = written
    damage(path, 3 * PAGE + 10, (500).to_bytes(2, "little"))
    assert "more elements than its page holds" in refused(path)


def test_keys_out_of_order_are_refused(written: tuple[Path, Meta]) -> None:
    path, _ = written
    damage(path, 3 * PAGE, encode_page(3, LEAF_PAGE, 2, leaf_body([(b"z", b"", 0), (b"a", b"", 0)]), PAGE))
    assert "keys out of order" in refused(path)


def test_a_tree_going_round_in_circles_is_refused(written: tuple[Path, Meta]) -> None:
    path, meta = written
    damage(path, meta.root * PAGE, encode_page(meta.root, BRANCH_PAGE, 1, branch_body([(b"0", meta.root)]), PAGE))
    assert "levels deep" in refused(path)


def test_a_snapshot_whose_digest_does_not_match_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.db"
    size = write(path, {b"key": {}, b"meta": {}})
    content = path.read_bytes()
    path.write_bytes(content + hashlib.sha256(content).digest())
    with open(path, "rb") as file:
        verify_digest(file, size + 32)
    damage(path, size // 2, b"\x01")
    with open(path, "rb") as file, pytest.raises(SnapshotError, match="sha256 does not match"):
        verify_digest(file, size + 32)


@pytest.mark.parametrize(
    "key_bucket, message",
    [
        ({b"nonsense": b""}, "is not an etcd revision"),
        ({revision_key(2): b"\xff\xff"}, "cannot be decoded"),
        ({revision_key(2): b"\x0a\x01k\x18\x03"}, "does not match its bucket key"),
    ],
)
def test_damaged_etcd_records_are_refused(tmp_path: Path, key_bucket: dict[bytes, bytes], message: str) -> None:
    path = tmp_path / "snapshot.db"
    size = write(path, {b"key": key_bucket, b"meta": {}})
    with open(path, "rb") as file, pytest.raises(SnapshotError, match=message):
        list(EtcdSnapshot(BoltReader(file, size)).records())


def test_a_bbolt_file_without_etcds_buckets_is_no_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "bolt.db"
    size = write(path, {b"other": {}})
    with open(path, "rb") as file, pytest.raises(SnapshotError, match="not an etcd snapshot"):
        EtcdSnapshot(BoltReader(file, size))
