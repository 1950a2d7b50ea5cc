"""etcd's key-range conventions.

A request names keys with ``key`` and ``range_end``: an empty ``range_end`` means the one key
``key``; ``range_end == b"\\0"`` means every key at or after ``key``; otherwise the keys in
``[key, range_end)`` (nothing when ``range_end <= key``).  Keys compare byte-wise, as etcd's.
"""

from __future__ import annotations

from dataclasses import dataclass

ALL_FOLLOWING = b"\0"


@dataclass(frozen=True, slots=True)
class KeyRange:
    """The keys a request names: ``[start, end)``, with ``end`` ``None`` for "no upper bound".

    ``single`` ranges name exactly ``start``.
    """

    start: bytes
    end: bytes | None
    single: bool = False

    @classmethod
    def of(cls, key: bytes, range_end: bytes) -> KeyRange:
        """The range an etcd request's ``key`` and ``range_end`` name."""
        if not range_end:
            return cls(key, None, single=True)
        if range_end == ALL_FOLLOWING:
            return cls(key, None)
        return cls(key, range_end)

    @property
    def shape(self) -> str:
        """``"one"``, ``"from"`` or ``"between"``: which SQL condition selects the range."""
        if self.single:
            return "one"
        return "from" if self.end is None else "between"

    @property
    def params(self) -> tuple[bytes, ...]:
        """The statement parameters of the range's SQL condition, in order."""
        return (self.start,) if self.end is None else (self.start, self.end)

    def __contains__(self, key: bytes) -> bool:
        if self.single:
            return key == self.start
        return key >= self.start and (self.end is None or key < self.end)
