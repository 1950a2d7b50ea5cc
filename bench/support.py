"""What the benchmarks share: scratch databases, CPU accounting from /proc, quantiles."""

from __future__ import annotations

import os
import resource
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

#: The database server processes whose CPU a MariaDB/MySQL or PostgreSQL backend adds.
DATABASE_COMMANDS = {"mysql": ("mariadbd", "mysqld"), "postgres": ("postgres",)}


def backend_name(backend: str) -> str:
    """``sqlite``, ``mysql`` or ``postgres`` for a ``--backend`` value."""
    return backend.split(":", 1)[0].replace("postgresql", "postgres")


@contextmanager
def scratch_database(backend: str, scratch: str) -> Iterator[str]:
    """The URL of an empty database, dropped afterwards: a file in ``scratch`` for
    ``sqlite``, else a new database on the server the ``backend`` URL names."""
    if backend == "sqlite":
        yield f"sqlite:///{scratch}/bench-{uuid.uuid4().hex[:8]}.db"
        return
    from tests.conftest import DatabaseServer

    server = DatabaseServer(backend_name(backend), backend)
    name = server.create()
    try:
        yield server.database_url(name)
    finally:
        server.drop(name)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time used so far by process ``pid``, 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """User plus system CPU time of this process so far, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pids_of(commands: Sequence[str]) -> list[int]:
    """The processes running one of ``commands`` (by their /proc ``comm``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in commands:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def machine_busy_seconds() -> float:
    """CPU seconds all cores of the machine spent busy so far, whoever used them."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def quantile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted values (nearest rank), in milliseconds."""
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")
