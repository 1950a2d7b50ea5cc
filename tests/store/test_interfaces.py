"""The store and every dialect provide their interfaces."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from zope.interface.verify import verifyObject

from k8s_sql.store.interfaces import IDialect, IStore
from k8s_sql.store.url import DatabaseURL

URLS = {"sqlite": "sqlite:///k.db", "mysql": "mysql://u@h/d", "postgres": "postgres://u@h/d"}


def test_the_store_provides_istore(store: Any) -> None:
    assert verifyObject(IStore, store)


@pytest.mark.parametrize("backend", sorted(URLS))
def test_each_dialect_provides_idialect(backend: str) -> None:
    module = importlib.import_module(f"k8s_sql.store.dialects.{backend}")
    dialect = module.Dialect(DatabaseURL.parse(URLS[backend]))
    assert verifyObject(IDialect, dialect)
    assert dialect.name == backend
