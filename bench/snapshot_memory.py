"""Memory of etcd snapshots both ways: k8s-sql serving ``etcdctl snapshot save``, and
``k8s-sql-migrate import`` of the file.

    python bench/snapshot_memory.py                       # 10^4 and 10^5 keys of 1 KiB, SQLite
    python bench/snapshot_memory.py --keys 100000 --value-size 1024 --backend postgres://postgres@127.0.0.1/postgres

For each number of keys: load that many keys of ``--value-size`` random bytes into a scratch
database (through the store's bulk load, one transaction per 1000 keys), start k8s-sql on
it, read one key, then take ``etcdctl snapshot save`` and report the time, the file's size,
the server's resident memory before (VmRSS) and its peak during the whole run (VmHWM, which
includes start-up), then ``k8s-sql-migrate import`` the file into a scratch SQLite database
and report that command's peak resident memory.  Memory that stays flat from 10^4 to 10^5
keys is memory that does not grow with the database.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import scratch_database  # noqa: E402
from tests.processes import K8sSQL, etcdctl  # noqa: E402

MiB = 1024 * 1024


def status_field(pid: int, name: str) -> int:
    """A memory field of /proc/PID/status, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(name)


def load(url: str, keys: int, value_size: int) -> int:
    """Bulk-load ``keys`` keys into the database at ``url``; its revision."""
    from twisted.internet import defer, task

    from k8s_sql.store import open_store
    from k8s_sql.store.model import KeyValue

    async def fill(reactor: Any) -> None:
        store = await open_store(url, reactor)
        try:
            revision = keys + 1
            await store.begin_load(revision, False)
            for start in range(0, keys, 1000):
                await store.load_keys([
                    KeyValue(b"/registry/bench/%08d" % n, n + 2, n + 2, 1, os.urandom(value_size))
                    for n in range(start, min(start + 1000, keys))
                ])
        finally:
            await store.close()

    task.react(lambda reactor: defer.ensureDeferred(fill(reactor)))
    return keys + 1


def measure(backend: str, keys: int, value_size: int, scratch: str) -> None:
    with scratch_database(backend, scratch) as url:
        subprocess.run([sys.executable, __file__, "--load-only", url, str(keys), str(value_size)], check=True)
        snapshot = Path(scratch) / f"snapshot-{keys}.db"
        with K8sSQL(url) as server:
            pid = server.process.pid
            etcdctl(server.endpoint, "get", "--keys-only", "/registry/bench/00000000")
            before = status_field(pid, "VmRSS")
            started = time.monotonic()
            etcdctl(server.endpoint, "snapshot", "save", str(snapshot), timeout=1800)
            took = time.monotonic() - started
            peak = status_field(pid, "VmHWM")
        print(
            f"{keys} keys of {value_size} B: snapshot of {snapshot.stat().st_size / MiB:.0f} MiB in {took:.1f} s;"
            f" server RSS {before / MiB:.0f} MiB before, peak {peak / MiB:.0f} MiB",
            flush=True,
        )
    target = f"sqlite:///{scratch}/import-{keys}.db"
    started = time.monotonic()
    importing = subprocess.Popen(
        [sys.executable, "-m", "k8s_sql.migrate", "import", "--file", str(snapshot), "--to", target, "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(importing.pid, 0)  # the resources of this child alone
    importing.returncode = os.waitstatus_to_exitcode(status)
    assert importing.returncode == 0, "the import failed"
    took = time.monotonic() - started
    peak = usage.ru_maxrss * 1024
    print(f"  k8s-sql-migrate import of it into SQLite: {took:.1f} s, peak RSS {peak / MiB:.0f} MiB", flush=True)
    snapshot.unlink()


def main() -> None:
    if sys.argv[1:2] == ["--load-only"]:
        load(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--value-size", type=int, default=1024)
    parser.add_argument("--backend", default="sqlite")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="snapshot-bench-") as scratch:
        for keys in arguments.keys:
            measure(arguments.backend, keys, arguments.value_size, scratch)


if __name__ == "__main__":
    main()
