"""Durations as etcd's and kine's flags spell them: ``500ms``, ``1.5s``, ``1h30m``, or a bare number."""

from __future__ import annotations

import re

#: Seconds per unit, as Go's ``time.ParseDuration`` names them.
UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}

_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")


def parse_duration(text: str, unit: str = "s") -> float:
    """The duration ``text`` names, in seconds.

    ``text`` is a Go duration (one or more number-unit pairs, e.g. ``1h30m``, ``250ms``)
    or a bare non-negative number counted in ``unit``.  Raises ``ValueError`` otherwise.
    """
    text = text.strip()
    if _NUMBER.fullmatch(text):
        return float(text) * UNITS[unit]
    position, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * UNITS[match.group(2)]
        position = match.end()
    if position == 0 or position != len(text):
        raise ValueError(f"{text!r} is not a duration (e.g. 1.5, 500ms, 30s, 5m, 1h)")
    return total


def positive_duration(text: str) -> float:
    """A duration greater than zero (``1.5``, ``500ms``, ``2m``), in seconds; for option parsers."""
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"{text!r} is not greater than zero")
    return seconds


def format_duration(seconds: float) -> str:
    """``seconds`` written as briefly as ``parse_duration`` reads it back (``1h``, ``90s``, ``0.5s``)."""
    for unit in ("h", "m"):
        count = seconds / UNITS[unit]
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    return f"{seconds:g}s"
