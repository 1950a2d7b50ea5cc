"""An exclusive ``flock(2)`` lock on a file, for processes that write one SQLite database.

SQLite lets one connection write at a time; another process that wants to write polls for
the lock in SQLite's busy handler, sleeping 1, 2, 5, 10 ... 100 ms between tries.  Worker
processes (or servers) writing one database file would spend their time asleep there
while the lock is free.  Taking this lock around every write transaction first queues
them in the kernel instead, which wakes the next writer as soon as the lock is released;
the kernel also releases it when its holder dies, SIGKILL included.
"""

from __future__ import annotations

import fcntl
import os
from types import TracebackType


class FileLock:
    """The lock on ``path`` (created if missing), held in a ``with`` block.

    One instance serves one thread at a time (a pool's single writer); the file is opened
    at first use and stays open, so taking the lock again costs one system call.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        assert self._fd is not None
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the file (releasing the lock if held)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
