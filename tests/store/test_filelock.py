"""FileLock: processes writing one SQLite file take turns in the kernel."""

from __future__ import annotations

import threading
from pathlib import Path

from twisted.internet.testing import MemoryReactorClock

from k8s_sql.store.pool import load_dialect
from k8s_sql.store.filelock import FileLock
from k8s_sql.store.url import DatabaseURL


def test_a_second_holder_waits_until_the_first_releases(tmp_path: Path) -> None:
    first, second = FileLock(str(tmp_path / "db-lock")), FileLock(str(tmp_path / "db-lock"))
    order: list[str] = []
    entered = threading.Event()

    def take_second() -> None:
        with second:
            order.append("second")
            entered.set()

    with first:
        thread = threading.Thread(target=take_second)
        thread.start()
        assert not entered.wait(0.3)  # blocked in flock(2) while the first holds the lock
        order.append("first released")
    thread.join(10)
    assert entered.is_set() and order == ["first released", "second"]
    with first:  # taken again at once
        pass
    first.close()
    second.close()


def test_the_sqlite_writer_holds_it_around_each_transaction(tmp_path: Path) -> None:
    dialect = load_dialect(DatabaseURL.parse(f"sqlite:///{tmp_path}/k8s.db"))
    writer = dialect.connection_pool(MemoryReactorClock(), writer=True, size=4)
    reader = dialect.connection_pool(MemoryReactorClock(), writer=False, size=2)
    assert isinstance(writer.interaction_lock, FileLock)
    assert writer.interaction_lock.path == f"{tmp_path}/k8s.db-lock"
    assert not isinstance(reader.interaction_lock, FileLock)
    memory = load_dialect(DatabaseURL.parse("sqlite:///:memory:")).connection_pool(MemoryReactorClock(), writer=True, size=1)
    assert not isinstance(memory.interaction_lock, FileLock)
