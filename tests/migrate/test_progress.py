"""Progress reports, on a ``task.Clock``."""

from __future__ import annotations

import io

from twisted.internet.task import Clock

from k8s_sql.migrate.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_reports_come_every_interval_then_a_summary() -> None:
    clock, stream = Clock(), io.StringIO()
    progress = Progress(clock, stream, interval=2.0)
    progress.start(total=400)
    clock.advance(1.0)
    assert stream.getvalue() == ""
    progress.advance(100, 3, 1024 * 1024)
    clock.advance(1.0)
    progress.advance(100, 0, 1024 * 1024)
    clock.advance(2.0)
    clock.advance(1.0)
    progress.stop()
    clock.advance(10.0)
    assert stream.getvalue().splitlines() == [
        "copied 100/400 keys (25%), 3 leases, 1.0 MiB, 50 keys/s",
        "copied 200/400 keys (50%), 3 leases, 2.0 MiB, 50 keys/s",
        "copied 200 keys and 3 leases (2.0 MiB) in 5.0 s, 40 keys/s",
    ]


def test_a_terminal_sees_one_line_rewritten() -> None:
    clock, stream = Clock(), Terminal()
    progress = Progress(clock, stream, interval=1.0, verb="verified")
    progress.start(total=0)
    progress.advance(5, 0, 10)
    clock.advance(1.0)
    progress.stop()
    assert stream.getvalue() == (
        "\r\x1b[Kverified 5/0 keys, 0 leases, 0.0 MiB, 5 keys/s"
        "\r\x1b[Kverified 5 keys and 0 leases (0.0 MiB) in 1.0 s, 5 keys/s\n"
    )


def test_without_an_interval_only_the_summary_is_written() -> None:
    clock, stream = Clock(), io.StringIO()
    progress = Progress(clock, stream, interval=None)
    progress.start(total=10)
    progress.advance(10, 0, 0)
    clock.advance(100.0)
    progress.stop()
    assert stream.getvalue() == "copied 10 keys and 0 leases (0.0 MiB) in 100.0 s, 0 keys/s\n"
