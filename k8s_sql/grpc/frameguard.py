"""Watch the frames an HTTP/2 client sends, before h2 parses them, for what breaks the limits.

h2 buffers a frame's whole body before checking its length against
SETTINGS_MAX_FRAME_SIZE, and a header block's CONTINUATION frames until the block ends,
so a peer announcing a 16 MiB frame, or sending CONTINUATION frames without end, would
be answered late or never; and h2 answers every PING and SETTINGS frame, however many.
:class:`FrameInspector` follows the frame boundaries of the bytes received (after the
client preface) and sees each frame's length, type and flags as its header arrives: it
refuses an overlong frame or header block at once, and counts the frames that cost the
server work without a request to show for them against the budgets of
:class:`~k8s_sql.grpc.abuse.AbuseLimits`.

The accounting is a few integer operations per frame; the clock is read only when a
budget runs out, to see whether its window is over.
"""

from __future__ import annotations

from h2.errors import ErrorCodes
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from k8s_sql.grpc.abuse import (
    CONTINUATION_FLOOD,
    EMPTY_DATA,
    FRAME_SIZE,
    HEADER_LIST,
    PING_FLOOD,
    PRIORITY_FLOOD,
    RAPID_RESET,
    SETTINGS_FLOOD,
    WINDOW_UPDATE_FLOOD,
    AbuseLimits,
    Breach,
)
from k8s_sql.grpc.interfaces import IFrameInspector

PREFACE_SIZE = 24
HEADER_SIZE = 9

# Frame types and flags (RFC 9113, section 6).
_DATA = 0x0
_HEADERS = 0x1
_PRIORITY = 0x2
_RST_STREAM = 0x3
_SETTINGS = 0x4
_PING = 0x6
_WINDOW_UPDATE = 0x8
_CONTINUATION = 0x9
_END_STREAM = 0x1
_ACK = 0x1
_END_HEADERS = 0x4
_PADDED = 0x8

_CALM = ErrorCodes.ENHANCE_YOUR_CALM
#: What each windowed budget counts, for the log.
_COUNTED = {
    PING_FLOOD: "PING frames with no response data between them",
    SETTINGS_FLOOD: "SETTINGS frames",
    EMPTY_DATA: "empty DATA frames",
    WINDOW_UPDATE_FLOOD: "WINDOW_UPDATE frames (beyond two per stream opened) with no response data between them",
    PRIORITY_FLOOD: "PRIORITY frames",
}


@implementer(IFrameInspector)
class FrameInspector:
    """Follows the frames of one connection's inbound bytes and counts them against ``limits``.

    @param clock: where the time of a budget's window comes from.
    @param max_frame_size: the largest frame accepted (our SETTINGS_MAX_FRAME_SIZE).
    @param max_header_list_size: the largest header block accepted (our
        SETTINGS_MAX_HEADER_LIST_SIZE), in HPACK bytes: a block larger than the header
        list it decodes to only comes from an encoder that makes strings longer.
    """

    __slots__ = (
        "_block",
        "_clock",
        "_continuations",
        "_empty",
        "_header",
        "_idle_mark",
        "_limits",
        "_max_block",
        "_max_continuations",
        "_max_frame",
        "_pings",
        "_priorities",
        "_reset_check",
        "_resets",
        "_settings",
        "_skip",
        "_streams",
        "_updates",
        "_window_start",
        "data_sent",
    )

    def __init__(
        self, clock: IReactorTime, limits: AbuseLimits, max_frame_size: int, max_header_list_size: int
    ) -> None:
        self._clock = clock
        self._limits = limits
        self._max_frame = max_frame_size
        self._max_block = max_header_list_size
        self._max_continuations = max(limits.continuations, -(-max_header_list_size // max_frame_size))
        self._skip = PREFACE_SIZE
        self._header = b""
        self._block = self._continuations = 0
        #: DATA frames sent on the connection so far (the protocol counts them here).
        self.data_sent = 0
        self._idle_mark = 0
        self._new_window(clock.seconds())

    def inspect(self, data: bytes) -> Breach | None:
        """Account for ``data``, the next bytes received; the first limit they break, or ``None``."""
        offset = 0
        end = len(data)
        while True:
            skip = self._skip
            if skip:
                if end - offset <= skip:
                    self._skip = skip - (end - offset)
                    return None
                offset += skip
                self._skip = 0
            if self._header:
                # A header split between reads: rare, so it may cost a copy.
                missing = HEADER_SIZE - len(self._header)
                if end - offset < missing:
                    self._header += data[offset:]
                    return None
                buf = self._header + data[offset : offset + missing]
                self._header = b""
                at = 0
                offset += missing
            elif end - offset < HEADER_SIZE:
                self._header = data[offset:]
                return None
            else:
                buf = data
                at = offset
                offset += HEADER_SIZE
            length = buf[at] << 16 | buf[at + 1] << 8 | buf[at + 2]
            if length > self._max_frame:
                return Breach(
                    FRAME_SIZE, ErrorCodes.FRAME_SIZE_ERROR, f"a frame of {length} bytes, over {self._max_frame}"
                )
            self._skip = length
            kind = buf[at + 3]
            flags = buf[at + 4]
            breach = None
            if kind == _DATA:
                # Empty: no payload, or padding only (its first byte says how long the padding is).
                if not flags & _END_STREAM and (
                    length == 0 or (flags & _PADDED and offset < end and data[offset] + 1 == length)
                ):
                    self._empty += 1
                    if self._empty > self._limits.empty_data:
                        breach = self._spent(EMPTY_DATA, self._limits.empty_data)
            elif kind == _HEADERS:
                self._streams += 1
                if not flags & _END_HEADERS:
                    self._block = length
                    self._continuations = 0
                    breach = self._check_block()
            elif kind == _CONTINUATION:
                self._block += length
                self._continuations += 1
                breach = self._check_block()
            elif kind == _RST_STREAM:
                self._resets += 1
                if self._resets > self._reset_check:
                    breach = self._check_resets()
            elif kind == _PING:
                if not flags & _ACK:
                    self._pings += 1
                    if self._pings > self._limits.pings:
                        breach = self._spent_idle(PING_FLOOD, self._limits.pings)
            elif kind == _SETTINGS:
                if not flags & _ACK:
                    self._settings += 1
                    if self._settings > self._limits.settings:
                        breach = self._spent(SETTINGS_FLOOD, self._limits.settings)
            elif kind == _WINDOW_UPDATE:
                self._updates += 1
                # Clients may open windows for each stream they open: grpcio opens the stream's
                # and the connection's for the 5 bytes of a message's prefix.
                if self._updates > self._limits.window_updates + 2 * self._streams:
                    breach = self._spent_idle(WINDOW_UPDATE_FLOOD, self._limits.window_updates)
            elif kind == _PRIORITY:
                self._priorities += 1
                if self._priorities > self._limits.priority:
                    breach = self._spent(PRIORITY_FLOOD, self._limits.priority)
            if breach is not None:
                return breach

    def stream_refused(self) -> Breach | None:
        """A stream was refused for going over MAX_CONCURRENT_STREAMS: it counts as reset."""
        self._resets += 1
        return self._check_resets() if self._resets > self._reset_check else None

    # Budgets

    def _new_window(self, now: float) -> None:
        self._window_start = now
        self._streams = self._resets = self._pings = self._settings = self._empty = 0
        self._updates = self._priorities = 0
        self._reset_check = self._limits.resets

    def _window_over(self) -> bool:
        """Whether the current window has lasted its time; if so, a new one starts now."""
        now = self._clock.seconds()
        if now - self._window_start < self._limits.window:
            return False
        self._new_window(now)
        return True

    def _spent(self, kind: str, limit: int) -> Breach | None:
        """A budget has run out: fine if its window is over, else the breach."""
        if self._window_over():
            return None
        return Breach(kind, _CALM, f"more than {limit} {_COUNTED[kind]} within {self._limits.window:g} s")

    def _spent_idle(self, kind: str, limit: int) -> Breach | None:
        """A budget of frames that are fine while response data flows has run out."""
        if self.data_sent != self._idle_mark:
            self._idle_mark = self.data_sent
            self._pings = self._updates = 0
            return None
        return self._spent(kind, limit)

    def _check_resets(self) -> Breach | None:
        """More streams were reset than the budget: a breach if they are most of those opened."""
        if self._window_over():
            return None
        if 2 * self._resets <= self._streams:
            self._reset_check = self._resets + self._limits.resets
            return None
        return Breach(
            RAPID_RESET,
            _CALM,
            f"{self._resets} streams reset or refused of {self._streams} opened within {self._limits.window:g} s",
        )

    def _check_block(self) -> Breach | None:
        """The header block being received must stay within the header list size and frame count."""
        if self._block > self._max_block:
            return Breach(HEADER_LIST, _CALM, f"a header block of more than {self._max_block} bytes")
        if self._continuations > self._max_continuations:
            return Breach(
                CONTINUATION_FLOOD, _CALM, f"a header block of more than {self._max_continuations} CONTINUATION frames"
            )
        return None
