"""etcd's key-range conventions, and the one type every layer uses for a range of keys.

A request names keys with ``key`` and ``range_end``: an empty ``range_end`` means the one key
``key``; ``range_end == b"\\0"`` means every key at or after ``key``; otherwise the keys in
``[key, range_end)`` (nothing when ``range_end <= key``).  Keys compare byte-wise, as etcd's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALL_FOLLOWING = b"\0"


@dataclass(frozen=True, slots=True)
class KeyRange:
    """The keys ``start <= key < end``; ``end`` ``None`` means every key from ``start`` on.

    The range of one key is ``[key, key + b"\\0")``: ``single`` tells it apart, so that the
    store can look the key up by equality and the watch hub by dictionary.
    """

    start: bytes
    end: bytes | None
    #: Whether the range holds exactly the one key ``start``.
    single: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        end = self.end
        single = end is not None and len(end) == len(self.start) + 1 and end[-1] == 0 and end.startswith(self.start)
        object.__setattr__(self, "single", single)

    @classmethod
    def of(cls, key: bytes, range_end: bytes) -> KeyRange:
        """The range an etcd request's ``key`` and ``range_end`` name."""
        if not range_end:
            return cls(key, key + b"\0")
        if range_end == ALL_FOLLOWING:
            return cls(key, None)
        return cls(key, range_end)

    @classmethod
    def one(cls, key: bytes) -> KeyRange:
        """The range holding ``key`` alone."""
        return cls(key, key + b"\0")

    @property
    def empty(self) -> bool:
        """Whether the range holds no key at all (``end <= start``)."""
        return self.end is not None and self.end <= self.start

    @property
    def shape(self) -> str:
        """``"one"``, ``"from"`` or ``"between"``: which SQL condition selects the range."""
        if self.single:
            return "one"
        return "from" if self.end is None else "between"

    @property
    def params(self) -> tuple[bytes, ...]:
        """The statement parameters of the range's SQL condition, in order."""
        if self.single or self.end is None:
            return (self.start,)
        return (self.start, self.end)

    def __contains__(self, key: object) -> bool:
        assert isinstance(key, bytes)
        return self.start <= key and (self.end is None or key < self.end)
