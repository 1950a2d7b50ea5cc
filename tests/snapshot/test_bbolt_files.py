"""k8s-sql's bbolt writer and reader against each other, and against bbolt itself.

Any tree of buckets the writer writes, the reader reads back the same, with every page used
exactly once (what bbolt's consistency check requires of a file without free pages); and
``etcdutl snapshot status``, which runs bbolt 1.3.6's check before reading every bucket,
accepts what the writer wrote and reads the same entries.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from k8s_sql.snapshot.bbolt import MAGIC, META_PAGE, Meta, PageHeader, SnapshotError, fnv64a
from k8s_sql.snapshot.layout import revision_key
from k8s_sql.snapshot.reader import BoltReader, Bucket
from k8s_sql.snapshot.writer import FREELIST_ID
from tests.snapshot.support import Tree, etcdutl_status, expected_status, pages_in_use, read, write


@pytest.mark.parametrize(
    "data, value", [(b"", 0xCBF29CE484222325), (b"a", 0xAF63DC4C8601EC8C), (b"foobar", 0x85944171F73967E8)]
)
def test_fnv64a_is_the_reference_fnv_1a(data: bytes, value: int) -> None:
    assert fnv64a(data) == value


def test_a_meta_page_round_trips_and_is_checked() -> None:
    meta = Meta(page_size=4096, root=7, freelist=2, high_water=9, txid=5)
    page = meta.encode(1)
    assert len(page) == 4096 and PageHeader.decode(page) == PageHeader(1, META_PAGE, 0, 0)
    assert Meta.decode(page) == meta
    assert int.from_bytes(page[16:20], "little") == MAGIC
    for offset, message in [(16, "wrong magic"), (20, "version 3 is not supported"), (40, "checksum")]:
        damaged = bytearray(page)
        damaged[offset] += 1
        with pytest.raises(SnapshotError, match=message):
            Meta.decode(bytes(damaged))


keys = st.binary(min_size=1, max_size=24)
values = st.one_of(st.binary(max_size=40), st.binary(min_size=400, max_size=5000))
#: Buckets of many keys with small values: deep trees of branch pages.
numbered = st.integers(0, 3000).map(lambda count: {b"%06d" % n: b"v%d" % n for n in range(count)})
buckets = st.one_of(
    numbered,
    st.dictionaries(keys, st.one_of(values, numbered, st.dictionaries(keys, values, max_size=20)), max_size=40),
)


@settings(max_examples=60, deadline=None)
@given(tree=st.dictionaries(keys, buckets, max_size=5), page_size=st.sampled_from([512, 1024, 4096]))
def test_any_tree_written_reads_back_the_same_with_each_page_used_once(tree: Tree, page_size: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "bolt.db"
        size = write(path, tree, page_size)
        assert path.stat().st_size == size
        assert read(path) == tree
        used = pages_in_use(path)
        assert sorted(used) == list(range(FREELIST_ID + 1, size // page_size))


def test_small_buckets_are_inline_as_bbolt_stores_them(tmp_path: Path) -> None:
    path = tmp_path / "bolt.db"
    write(path, {b"empty": {}, b"small": {b"k": b"v"}, b"big": {b"k": b"v" * 2000}, b"parent": {b"child": {}}})
    with open(path, "rb") as file:
        reader = BoltReader(file, path.stat().st_size)
        found = {name: bucket for name, bucket in reader.entries(reader.root()) if isinstance(bucket, Bucket)}
    assert (found[b"empty"].root, found[b"small"].root) == (0, 0)
    assert found[b"small"].inline[16:] == b"\x00\x00\x00\x00\x10\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00kv"
    assert found[b"big"].root > FREELIST_ID and found[b"parent"].root > FREELIST_ID


def test_etcdutl_checks_and_reads_a_file_of_every_shape(tmp_path: Path) -> None:
    """Deep trees, overflow pages, nested and inline buckets, a revision-keyed ``key`` bucket."""
    key_bucket = {revision_key(n, n % 3, n % 7 == 0): b"%d" % n * (n % 500) for n in range(2, 5000)}
    tree: Tree = {
        b"key": key_bucket,
        b"lease": {n.to_bytes(8, "big"): b"lease" for n in range(1, 300)},
        b"meta": {b"term": (1).to_bytes(8, "big")},
        b"nested": {b"a": {b"b": b"c"}, b"big": {b"%05d" % n: b"x" * 100 for n in range(2000)}, b"v": b"value"},
        b"overflow": {b"huge": bytes(range(256)) * 400},
        b"empty": {},
    }
    path = tmp_path / "bolt.db"
    size = write(path, tree)
    assert etcdutl_status(path) == expected_status(tree, size)
    assert read(path) == tree
