"""The limits that keep one HTTP/2 client from exhausting the server, and what breaking one means.

Each limit answers one known attack on HTTP/2 servers: streams opened and reset at once
(rapid reset, CVE-2023-44487), floods of frames the server must answer or process
without any request to show for them (PING and SETTINGS: CVE-2019-9512 and -9515; empty
DATA frames: CVE-2019-9518; WINDOW_UPDATE and PRIORITY frames), header blocks that never
end (CONTINUATION floods, CVE-2024-27316 and its kin) or grow past the advertised header
list size.  The frame budgets are counted per connection over a window of time by
:class:`~k8s_sql.grpc.frameguard.FrameInspector`; a client that spends one gets a GOAWAY
with ENHANCE_YOUR_CALM (RFC 9113 section 10.5: "An endpoint MAY treat activity that is
suspicious as a connection error of type ENHANCE_YOUR_CALM") and its connection closes.
The other connections are served on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from h2.errors import ErrorCodes
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from k8s_sql.grpc.interfaces import IFrameInspector

#: Breach kinds: the label values of ``k8s_sql_http2_abuse_total``.
RAPID_RESET = "rapid_reset"
PING_FLOOD = "ping"
SETTINGS_FLOOD = "settings"
EMPTY_DATA = "empty_data"
WINDOW_UPDATE_FLOOD = "window_update"
PRIORITY_FLOOD = "priority"
CONTINUATION_FLOOD = "continuation"
HEADER_LIST = "header_list"
FRAME_SIZE = "frame_size"
WRITE_STALL = "write_stall"
MAX_CONCURRENT_STREAMS = "max_concurrent_streams"
BLOCKED_CALLS = "blocked_calls"
MAX_CONNECTIONS = "max_connections"


class AbuseLimits(NamedTuple):
    """The budgets of one HTTP/2 connection (``GRPCServerFactory(abuse_limits=...)``).

    Frame budgets are counted over ``window`` seconds; a connection that spends one
    within a window is closed (GOAWAY ENHANCE_YOUR_CALM).  A new window starts when a
    budget runs out after the current one has lasted ``window`` seconds, so a client may
    spend up to about twice a budget across the turn of a window, never more.
    """

    #: Seconds over which the frame budgets are counted.
    window: float = 10.0
    #: Streams the client may reset (RST_STREAM) or open over MAX_CONCURRENT_STREAMS (refused)
    #: in a window; past that, and once more than half of the streams it opened in the window
    #: ended so, the connection is closed (rapid reset).  The ratio spares busy clients, such as
    #: kube-apiserver, whose every connection carries thousands of calls and a few cancellations.
    resets: int = 200
    #: PING frames in a window with no response data sent in between (gRPC clients ping to
    #: keep a connection alive, every 10 s at most, or to measure it while receiving data).
    pings: int = 100
    #: SETTINGS frames in a window (clients send one, and a few more as their windows grow).
    settings: int = 100
    #: DATA frames carrying nothing without ending their stream, in a window.
    empty_data: int = 100
    #: WINDOW_UPDATE frames in a window, beyond two per stream opened, with no response data
    #: sent in between (clients open windows as they receive data, and as they open streams).
    window_updates: int = 100
    #: PRIORITY frames in a window (gRPC clients send none; RFC 9113 deprecates them).
    priority: int = 1000
    #: CONTINUATION frames in one header block, at least as many as a block of the largest
    #: header list needs (clients fill each frame: 64 KiB of headers take 4 frames of 16 KiB).
    continuations: int = 16
    #: Calls of a connection that may wait at once for the client to open its flow-control
    #: window (or to read); while that many wait, new streams are refused (REFUSED_STREAM,
    #: which clients retry), so that a client holding its windows closed cannot make the
    #: server hold more responses than that.  Go's HTTP/2 server lets a client have 250
    #: streams open at all.
    blocked_calls: int = 250
    #: Request bytes read while the client reads none of the server's output (the transport
    #: holds more than its buffer); past that, reading stops until the client reads again,
    #: so that what the server writes in answer (window updates, resets, acknowledgements)
    #: cannot pile up without bound.
    unanswered_input: int = 1024 * 1024


class Breach(NamedTuple):
    """A limit a client broke: the connection ends with GOAWAY ``code``."""

    #: Which limit (a breach kind, as the metric labels it).
    kind: str
    #: The HTTP/2 error code of the GOAWAY.
    code: ErrorCodes
    #: What happened, for the log.
    detail: str


#: The budgets a ``GRPCServerFactory`` applies unless told otherwise.
DEFAULT_LIMITS = AbuseLimits()


class StallWatch:
    """Ends a connection whose output waits while none of it is sent for ``timeout`` seconds.

    A client can keep its flow-control window closed, or stop reading, for ever; what waits
    for it is bounded per call, and this bounds how long it is held.  Armed when output
    starts waiting; when it fires, it is done if nothing waits any more, armed again if
    DATA was sent meanwhile (``inspector.data_sent``), else it calls ``stalled``.

    @param waiting: whether output waits for the client now.
    @param stalled: ends the connection.
    """

    __slots__ = ("_clock", "_inspector", "_mark", "_stalled", "_timer", "_waiting", "timeout")

    def __init__(
        self,
        clock: IReactorTime,
        timeout: float,
        inspector: IFrameInspector,
        waiting: Callable[[], bool],
        stalled: Callable[[], None],
    ) -> None:
        self._clock = clock
        #: Seconds without DATA sent; 0 never ends the connection.
        self.timeout = timeout
        self._inspector = inspector
        self._waiting = waiting
        self._stalled = stalled
        self._timer: IDelayedCall | None = None
        self._mark = 0

    def start(self) -> None:
        """Output waits for the client: watch it, unless already watching."""
        if self._timer is None and self.timeout:
            self._mark = self._inspector.data_sent
            self._timer = self._clock.callLater(self.timeout, self._check)

    def stop(self) -> None:
        """The connection is gone."""
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _check(self) -> None:
        self._timer = None
        if not self._waiting():
            return
        if self._inspector.data_sent != self._mark:
            self.start()
            return
        self._stalled()
