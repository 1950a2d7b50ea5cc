"""The one key-range type, read from etcd's key/range_end convention."""

from __future__ import annotations

from k8s_sql.store.keys import ALL_FOLLOWING, KeyRange


def test_one_key() -> None:
    single = KeyRange.of(b"a", b"")
    assert single == KeyRange.one(b"a") == KeyRange(b"a", b"a\x00")
    assert single.single and single.shape == "one" and single.params == (b"a",)
    assert b"a" in single and b"a\x00" not in single and b"" not in single


def test_an_explicit_end_one_past_the_key_is_the_same_single_range() -> None:
    assert KeyRange.of(b"k", b"k\x00").single


def test_prefix() -> None:
    prefix = KeyRange.of(b"a/", b"a0")
    assert not prefix.single and prefix.shape == "between" and prefix.params == (b"a/", b"a0")
    assert b"a/x" in prefix and b"a0" not in prefix and b"a" not in prefix and not prefix.empty


def test_everything_from_a_key() -> None:
    open_ended = KeyRange.of(b"m", ALL_FOLLOWING)
    assert open_ended.end is None and open_ended.shape == "from" and open_ended.params == (b"m",)
    assert b"zzz" in open_ended and b"l" not in open_ended and not open_ended.empty


def test_an_end_at_or_below_the_key_is_empty() -> None:
    assert KeyRange.of(b"b", b"a").empty and KeyRange.of(b"b", b"b").empty
    assert b"b" not in KeyRange.of(b"b", b"a")
