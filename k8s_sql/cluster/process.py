"""Where this process runs, as the member registry records it, and whether a process still runs.

A process ID means something only within its PID namespace, during one boot of one machine:
the registry records that *PID space* (the boot's ID and the namespace, from Linux's
``/proc``) beside the PID, so that a server restarted after a crash can tell that the
process holding its name before is gone, and take the name over at once.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class ProcessPlace:
    """A process's host name (for people), PID space (``""`` when unknown) and PID."""

    host: str
    pid_space: str
    pid: int

    @classmethod
    def here(cls) -> ProcessPlace:
        """This process's place."""
        return cls(socket.gethostname(), pid_space(), os.getpid())


def pid_space(proc: Path = _PROC) -> str:
    """This process's PID space: the boot ID and the PID namespace, or ``""`` without /proc."""
    try:
        boot = (proc / "sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink(proc / "self/ns/pid")
    except OSError:
        return ""
    return f"{boot}/{namespace}"


def running(pid: int, proc: Path = _PROC) -> bool:
    """Whether process ``pid`` of this PID space exists and has not exited (a zombie has)."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]
