"""PostgreSQL pushes commits made by other servers (LISTEN/NOTIFY), and keeps doing so after
its listening connection was lost and came back."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer

from k8s_sql.store import open_store
from k8s_sql.store.model import PutRequest
from tests.store.proxy import CuttableProxy


class Waiter:
    """Fires ``reached`` once ``store`` reports a commit at or after ``revision``."""

    def __init__(self, store: Any, revision: int) -> None:
        self.reached: defer.Deferred[int] = defer.Deferred()
        self._revision = revision
        self._leave = store.notify_commits(self._seen)

    def _seen(self, revision: int) -> None:
        if revision >= self._revision and not self.reached.called:
            self._leave()
            self.reached.callback(revision)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_commits_by_other_servers_are_pushed(run: Any, reactor: Any, store: Any, backend: str) -> None:
    proxy = CuttableProxy(reactor, backend)
    other = run(open_store, run(proxy.start), reactor)
    try:
        waiter = run(Waiter, other, 2)
        run(store.put, PutRequest(b"a"))
        assert run(lambda: waiter.reached, timeout=10) == 2

        run(proxy.cut)
        run(proxy.restore)
        run(store.put, PutRequest(b"b"))
        # Back, the listener reports the current revision: the commit made meanwhile.
        waiter = run(Waiter, other, 3)
        assert run(lambda: waiter.reached, timeout=20) >= 3
        waiter = run(Waiter, other, 4)
        run(store.put, PutRequest(b"c"))
        assert run(lambda: waiter.reached, timeout=10) == 4
    finally:
        run(other.close)
