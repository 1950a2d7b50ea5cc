"""Fixtures of the store tests."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from k8s_sql.store import open_store


@pytest.fixture
def opener(backend: str, run: Callable[..., Any], reactor: Any) -> Iterator[Callable[..., Any]]:
    """``opener(**options)`` opens another store on ``backend``'s database; all are closed after the test."""
    opened: list[Any] = []

    def open_another(**options: Any) -> Any:
        store = run(open_store, backend, reactor, **options)
        opened.append(store)
        return store

    yield open_another
    for store in opened:
        run(store.close)
