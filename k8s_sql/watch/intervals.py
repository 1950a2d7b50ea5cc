"""An interval index over byte-string keys: which stored ranges contain a given key.

The hub keeps one entry per distinct watched range and asks, for each changed key, which
entries contain it.  A balanced search tree ordered by range start, each node also knowing
the largest end in its subtree, answers that in O(log n) plus O(log n) per match, so the
cost of an event grows with the ranges it matches, not with all ranges watched.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


def _wider(a: bytes | None, b: bytes | None) -> bytes | None:
    """The larger of two range ends, ``None`` (no upper bound) being the largest."""
    if a is None or b is None:
        return None
    return a if a >= b else b


def _compare(start: bytes, end: bytes | None, node: _Node[T]) -> int:
    """-1, 0 or 1 as ``[start, end)`` sorts before, equal to or after the node's range."""
    if start != node.start:
        return -1 if start < node.start else 1
    if end == node.end:
        return 0
    if end is None:
        return 1
    if node.end is None or end < node.end:
        return -1
    return 1


class _Node(Generic[T]):
    """One stored range, its value and the AVL bookkeeping of its subtree."""

    __slots__ = ("end", "height", "left", "reach", "right", "start", "value")

    def __init__(self, start: bytes, end: bytes | None, value: T) -> None:
        self.start = start
        self.end = end
        self.value = value
        self.left: _Node[T] | None = None
        self.right: _Node[T] | None = None
        self.height = 1
        #: The largest end of any range in this subtree (None: unbounded).
        self.reach: bytes | None = end

    def update(self) -> None:
        """Recompute height and reach from the children."""
        left, right = self.left, self.right
        self.height = 1 + max(left.height if left else 0, right.height if right else 0)
        reach = self.end
        if left is not None:
            reach = _wider(reach, left.reach)
        if right is not None:
            reach = _wider(reach, right.reach)
        self.reach = reach


def _height(node: _Node[T] | None) -> int:
    return node.height if node is not None else 0


_OTHER_SIDE = {"left": "right", "right": "left"}


def _lift(node: _Node[T], side: str) -> _Node[T]:
    """Rotate ``node``'s child on ``side`` ("left" or "right") up into its place."""
    other = _OTHER_SIDE[side]
    pivot = getattr(node, side)
    setattr(node, side, getattr(pivot, other))
    setattr(pivot, other, node)
    node.update()
    pivot.update()
    return pivot


def _balance(node: _Node[T]) -> _Node[T]:
    """Restore the AVL property at ``node`` after one insertion or removal below it."""
    node.update()
    skew = _height(node.left) - _height(node.right)
    if abs(skew) <= 1:
        return node
    heavy = "left" if skew > 0 else "right"
    child = getattr(node, heavy)
    if _height(getattr(child, heavy)) < _height(getattr(child, _OTHER_SIDE[heavy])):
        setattr(node, heavy, _lift(child, _OTHER_SIDE[heavy]))
    return _lift(node, heavy)


class IntervalIndex(Generic[T]):
    """Values stored under distinct half-open key ranges ``[start, end)``.

    ``end`` ``None`` means the range has no upper bound.  Each range holds one value; the
    hub stores the group of watchers sharing that range.
    """

    def __init__(self) -> None:
        self._root: _Node[T] | None = None
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def get(self, start: bytes, end: bytes | None) -> T | None:
        """The value stored under exactly ``[start, end)``, or ``None``."""
        node = self._root
        while node is not None:
            order = _compare(start, end, node)
            if order == 0:
                return node.value
            node = node.left if order < 0 else node.right
        return None

    def add(self, start: bytes, end: bytes | None, value: T) -> None:
        """Store ``value`` under ``[start, end)``, which must not be stored yet."""
        self._root = self._add(self._root, start, end, value)
        self._size += 1

    def _add(self, node: _Node[T] | None, start: bytes, end: bytes | None, value: T) -> _Node[T]:
        if node is None:
            return _Node(start, end, value)
        order = _compare(start, end, node)
        if order == 0:
            raise KeyError((start, end))
        if order < 0:
            node.left = self._add(node.left, start, end, value)
        else:
            node.right = self._add(node.right, start, end, value)
        return _balance(node)

    def remove(self, start: bytes, end: bytes | None) -> None:
        """Forget the range ``[start, end)``, which must be stored."""
        self._root = self._remove(self._root, start, end)
        self._size -= 1

    def _remove(self, node: _Node[T] | None, start: bytes, end: bytes | None) -> _Node[T] | None:
        if node is None:
            raise KeyError((start, end))
        order = _compare(start, end, node)
        if order < 0:
            node.left = self._remove(node.left, start, end)
        elif order > 0:
            node.right = self._remove(node.right, start, end)
        elif node.left is None or node.right is None:
            return node.left or node.right
        else:
            # Take the place of the next range in order, then remove that one below.
            successor = node.right
            while successor.left is not None:
                successor = successor.left
            node.start, node.end, node.value = successor.start, successor.end, successor.value
            node.right = self._remove(node.right, successor.start, successor.end)
        return _balance(node)

    def stab(self, key: bytes) -> list[T]:
        """The values of every stored range that contains ``key``."""
        found: list[T] = []
        pending = [self._root]
        while pending:
            node = pending.pop()
            # A subtree whose ranges all end at or before the key holds no match.
            if node is None or (node.reach is not None and node.reach <= key):
                continue
            pending.append(node.left)
            if node.start <= key:
                if node.end is None or key < node.end:
                    found.append(node.value)
                pending.append(node.right)
        return found
