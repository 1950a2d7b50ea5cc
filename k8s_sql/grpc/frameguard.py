"""Spot an overlong HTTP/2 frame as soon as its header arrives.

h2 buffers a frame's whole body before checking its length against
SETTINGS_MAX_FRAME_SIZE, so a peer announcing a 16 MiB frame would be answered only
after sending 16 MiB, or never.  This guard follows the frame boundaries of the bytes
received (after the client preface) and reports the first header over the limit.
"""

from __future__ import annotations

PREFACE_SIZE = 24
HEADER_SIZE = 9


class FrameLengthGuard:
    """Tracks frame boundaries in a connection's inbound bytes."""

    __slots__ = ("_header", "_skip")

    def __init__(self) -> None:
        self._skip = PREFACE_SIZE
        self._header = b""

    def check(self, data: bytes, limit: int) -> bool:
        """Account for ``data``; False once a frame announces more than ``limit`` bytes."""
        offset = 0
        end = len(data)
        while True:
            if self._skip:
                step = min(self._skip, end - offset)
                self._skip -= step
                offset += step
                if self._skip:
                    return True
            missing = HEADER_SIZE - len(self._header)
            if end - offset < missing:
                self._header += data[offset:]
                return True
            length = int.from_bytes((self._header + data[offset : offset + 3])[:3], "big")
            offset += missing
            self._header = b""
            if length > limit:
                return False
            self._skip = length
