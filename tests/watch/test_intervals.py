"""The interval index finds exactly the ranges containing a key, visiting few of the others."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from k8s_sql.watch.intervals import IntervalIndex

keys = st.binary(min_size=0, max_size=3)
ends = st.one_of(st.none(), keys)


def contains(start: bytes, end: bytes | None, key: bytes) -> bool:
    return start <= key and (end is None or key < end)


@settings(max_examples=300, deadline=None)
@given(
    operations=st.lists(st.tuples(st.booleans(), keys, ends), max_size=80),
    probes=st.lists(keys, max_size=20),
)
def test_stab_agrees_with_brute_force(
    operations: list[tuple[bool, bytes, bytes | None]], probes: list[bytes]
) -> None:
    """After any mix of additions and removals, ``stab`` returns the containing ranges."""
    index: IntervalIndex[tuple[bytes, bytes | None]] = IntervalIndex()
    stored: set[tuple[bytes, bytes | None]] = set()
    for adding, start, end in operations:
        if adding and (start, end) not in stored:
            index.add(start, end, (start, end))
            stored.add((start, end))
        elif not adding and (start, end) in stored:
            index.remove(start, end)
            stored.discard((start, end))
        assert len(index) == len(stored)
    for start, end in stored:
        assert index.get(start, end) == (start, end)
    for key in probes + [start for start, _ in stored]:
        expected = sorted((r for r in stored if contains(*r, key)), key=repr)
        assert sorted(index.stab(key), key=repr) == expected


def test_duplicate_and_missing_ranges_are_refused() -> None:
    index: IntervalIndex[str] = IntervalIndex()
    index.add(b"a", b"b", "first")
    try:
        index.add(b"a", b"b", "again")
    except KeyError:
        pass
    else:
        raise AssertionError("a range stored twice")
    index.remove(b"a", b"b")
    try:
        index.remove(b"a", b"b")
    except KeyError:
        pass
    else:
        raise AssertionError("a missing range removed")
    assert index.get(b"a", b"b") is None


class CountingKey(bytes):
    """A key that counts the comparisons made with it."""

    comparisons = 0

    def _count(self) -> None:
        CountingKey.comparisons += 1

    def __lt__(self, other: bytes) -> bool:
        self._count()
        return bytes.__lt__(self, other)

    def __le__(self, other: bytes) -> bool:
        self._count()
        return bytes.__le__(self, other)

    def __gt__(self, other: bytes) -> bool:
        self._count()
        return bytes.__gt__(self, other)

    def __ge__(self, other: bytes) -> bool:
        self._count()
        return bytes.__ge__(self, other)

    def __eq__(self, other: object) -> bool:
        self._count()
        return bytes.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        self._count()
        return bytes.__ne__(self, other)

    __hash__ = bytes.__hash__


def test_stab_work_grows_with_matches_not_with_ranges() -> None:
    """Among 4,096 disjoint ranges, finding the one holding a key takes a few dozen comparisons."""
    index: IntervalIndex[int] = IntervalIndex()
    for number in range(4096):
        index.add(CountingKey(b"/r/%05d/" % number), CountingKey(b"/r/%05d0" % number), number)
    CountingKey.comparisons = 0
    assert index.stab(CountingKey(b"/r/01234/pod")) == [1234]
    assert CountingKey.comparisons < 100
    CountingKey.comparisons = 0
    assert index.stab(CountingKey(b"/elsewhere")) == []
    assert CountingKey.comparisons < 100
