"""Helpers of the migration tests: scratch databases, sample data, full listings."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

from twisted.internet.defer import Deferred

from k8s_sql.migrate.progress import Progress
from k8s_sql.store import open_store
from k8s_sql.store.model import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    KeyValue,
    PutRequest,
    RangeRequest,
    TxnRequest,
)
from tests.conftest import database_server
from tests.processes import SOURCE_ROOT

Run = Callable[..., Any]

#: The lease deadlines of sample data are relative to the real clock: leases last an hour.
LEASE_TTL = 3600


class Databases:
    """Fresh empty databases of any backend, dropped (or deleted) at the end of the test."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp_path = tmp_path
        self._created: list[tuple[Any, str]] = []
        self._count = 0

    def new(self, backend: str) -> str:
        """The URL of a new empty database of ``backend``."""
        self._count += 1
        if backend == "sqlite":
            return f"sqlite:///{self._tmp_path}/db{self._count}.sqlite"
        server = database_server(backend)
        name = server.create()
        self._created.append((server, name))
        return server.database_url(name)

    def drop_all(self) -> None:
        for server, name in self._created:
            server.drop(name)


@contextlib.contextmanager
def opened(run: Run, reactor: Any, url: str) -> Iterator[Any]:
    """The store at ``url``, closed afterwards."""
    store = run(open_store, url, reactor)
    try:
        yield store
    finally:
        run(store.close)


def everything(run: Run, store: Any, revision: int = 0) -> tuple[KeyValue, ...]:
    """Every key of ``store`` (at ``revision``)."""
    return run(store.range, RangeRequest(b"\0", b"\0", revision=revision)).kvs


def leases(run: Run, store: Any, now: float) -> dict[int, tuple[int, int]]:
    """Every lease of ``store``: ID → (granted TTL, seconds left at ``now``)."""
    found = {}
    for lease in run(store.leases):
        ttl = run(store.lease_time_to_live, lease, False, now)
        found[lease] = (ttl.granted_ttl, ttl.ttl)
    return found


def fill(run: Run, store: Any, reactor: Any, keys: int = 300) -> None:
    """Give ``store`` varied history and contents: binary and prefix keys, updated keys
    (versions above 1), deletions, several keys written in one revision, leased keys and
    a compaction."""
    now = reactor.seconds()
    run(store.lease_grant, 7001, LEASE_TTL, now)
    run(store.lease_grant, 7002, 2 * LEASE_TTL, now)
    for i in range(keys):
        key = b"/registry/pods/ns%d/pod-%05d" % (i % 7, i)
        run(store.put, PutRequest(key, b"\x00value\xff" * (i % 13) + bytes([i % 256]), lease=(7001, 7002, 0)[i % 3]))
    for i in range(0, keys, 5):
        run(store.put, PutRequest(b"/registry/pods/ns%d/pod-%05d" % (i % 7, i), b"updated %d" % i))
    run(store.delete_range, DeleteRangeRequest(b"/registry/pods/ns3/", b"/registry/pods/ns30"))
    binary = [b"\x00", b"\x00\x00\xff", b"\xff", b"\xff\xff\xfe", b"a", b"a\x00", b"ab"]
    run(store.txn, TxnRequest(
        compare=(Compare(CompareTarget.VERSION, CompareResult.EQUAL, b"a", 0),),
        success=tuple(PutRequest(key, key * 3) for key in binary),
    ))
    middle = run(store.current_revision)
    run(store.put, PutRequest(b"compact_rev_key", b"%d" % middle))
    run(store.compact, middle - 10, True)
    run(store.put, PutRequest(b"a", b"after compaction"))


def progress(reactor: Any) -> Progress:
    """A progress reporter that writes into a string."""
    return Progress(reactor, io.StringIO(), interval=None)


def call(run: Run, coroutine_function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run an ``async def`` in the reactor thread and wait for its result."""
    return run(lambda: Deferred.fromCoroutine(coroutine_function(*args, **kwargs)), timeout=120)


def migrate(*arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``python -m k8s_sql.migrate`` (the ``k8s-sql-migrate`` command)."""
    result = subprocess.run(
        [sys.executable, "-m", "k8s_sql.migrate", *arguments],
        capture_output=True, text=True, timeout=600, cwd=SOURCE_ROOT,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"k8s-sql-migrate {arguments[0]} failed ({result.returncode}):\n{result.stderr}")
    return result
