"""Progress of a long copy or verification, reported on a text stream (stderr).

Every ``interval`` seconds of the injected clock a line tells how many keys were done (of
how many), how many bytes, and the rate; a terminal gets one line rewritten in place.
"""

from __future__ import annotations

from typing import TextIO

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

MiB = 1024 * 1024


class Progress:
    """Counts what a copy moved and reports it; ``verb`` names the work ("copied", "verified").

    With ``interval`` ``None`` only the summary is written.
    """

    def __init__(
        self, clock: IReactorTime, stream: TextIO, *, interval: float | None = 2.0, verb: str = "copied"
    ) -> None:
        self._clock = clock
        self._stream = stream
        self._interval = interval
        self._verb = verb
        self._terminal = stream.isatty()
        self._loop: LoopingCall | None = None
        self._started = 0.0
        self._total = 0
        #: Keys, leases and bytes (of keys and values) done so far.
        self.keys = self.leases = self.bytes = 0

    def start(self, total: int) -> None:
        """Begin timing a run over ``total`` keys, with a report every interval."""
        self._started = self._clock.seconds()
        self._total = total
        if self._interval is not None:
            self._loop = LoopingCall(self.report)
            self._loop.clock = self._clock
            self._loop.start(self._interval, now=False)

    def advance(self, keys: int, leases: int, size: int) -> None:
        """Count ``keys`` keys, ``leases`` leases and ``size`` bytes more."""
        self.keys += keys
        self.leases += leases
        self.bytes += size

    def report(self) -> None:
        """Write the current state."""
        share = f" ({100 * self.keys // self._total}%)" if self._total else ""
        line = (
            f"{self._verb} {self.keys}/{self._total} keys{share}, {self.leases} leases,"
            f" {self.bytes / MiB:.1f} MiB, {self._rate():.0f} keys/s"
        )
        self._write(line, final=False)

    def stop(self) -> None:
        """Stop reporting and write a summary."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        elapsed = self._clock.seconds() - self._started
        self._write(
            f"{self._verb} {self.keys} keys and {self.leases} leases ({self.bytes / MiB:.1f} MiB)"
            f" in {elapsed:.1f} s, {self._rate():.0f} keys/s",
            final=True,
        )

    def _rate(self) -> float:
        elapsed = self._clock.seconds() - self._started
        return self.keys / elapsed if elapsed > 0 else 0.0

    def _write(self, line: str, final: bool) -> None:
        if self._terminal:
            self._stream.write("\r\x1b[K" + line + ("\n" if final else ""))
        else:
            self._stream.write(line + "\n")
        self._stream.flush()
