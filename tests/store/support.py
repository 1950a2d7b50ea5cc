"""Helpers of the store tests."""

from __future__ import annotations

from typing import Any, Callable

from k8s_sql.store.schema import COMPACT_ROW, PHYSICAL_ROW
from k8s_sql.store.session import Session


def _empty(session: Session) -> None:
    for table in ("k8s_log", "k8s_kv", "k8s_lease"):
        session.run(f"DELETE FROM {table}")
    session.run("UPDATE k8s_revision SET revision = 1 WHERE id = 1")
    session.run("UPDATE k8s_meta SET value = -1 WHERE name IN (?, ?)", COMPACT_ROW, PHYSICAL_ROW)


def reset(run: Callable[..., Any], store: Any) -> None:
    """Make ``store``'s database as a fresh store's, keeping its cluster ID."""
    run(store.database.write, _empty)


def outcome(run: Callable[..., Any], function: Callable[..., Any], *args: Any) -> Any:
    """What ``function(*args)`` answers or raises, in a form two implementations can compare."""
    try:
        return ("ok", run(function, *args))
    except Exception as error:
        return ("error", type(error).__name__, getattr(error, "compact_revision", None))
