"""What the three dialects share."""

from __future__ import annotations

import contextlib
import enum
import importlib
from collections.abc import Callable, Collection, Iterator
from typing import Any

from zope.interface import implementer

from k8s_sql.store import schema
from k8s_sql.store.connections import QuietConnectionPool
from k8s_sql.store.interfaces import IDialect
from k8s_sql.store.model import DatabaseSize
from k8s_sql.store.session import Session
from k8s_sql.store.url import DatabaseURL


class Fault(enum.Enum):
    """What a failed database call means for the store."""

    #: A deadlock, serialization failure or busy database: run the transaction again.
    RETRY = "retry"
    #: The database is unreachable or failed: report ``Unavailable``.
    UNAVAILABLE = "unavailable"


@implementer(IDialect)
class Dialect:
    """A dialect for DB-API drivers with ``format`` parameters; subclasses fill in the rest."""

    name: str
    max_key_bytes: int
    lock_suffix = " FOR UPDATE"
    tables_statement: str
    driver: str
    key_type: str
    blob_type: str
    real_type: str
    table_options = ""
    inline_indexes = False
    #: Whether tables are stored in their primary key.
    clustered = False
    placeholder = "%s"
    #: URL options passed on to the driver's ``connect()``.
    known_options: frozenset[str] = frozenset()
    #: Fragments of the store's statements rewritten for this database's planner (index hints).
    planner_hints: dict[str, str] = {}
    #: The default size of the read pool (URL option ``readers``).
    default_readers = 4

    def __init__(self, url: DatabaseURL) -> None:
        self.url = url
        self.options = url.driver_options(self.known_options)
        self.connect_timeout = url.integer("connect_timeout", 10)
        self._statements: dict[str, str] = {}

    def sql(self, statement: str) -> str:
        """``statement`` with its ``?`` placeholders in the driver's parameter style and
        ``planner_hints`` applied."""
        try:
            return self._statements[statement]
        except KeyError:
            converted = statement.replace("?", self.placeholder)
            for fragment, hinted in self.planner_hints.items():
                converted = converted.replace(fragment, hinted)
            self._statements[statement] = converted
            return converted

    def schema(self, tables: Collection[str] = schema.TABLES) -> list[str]:
        """The DDL creating ``tables`` and their indexes."""
        return schema.statements(
            self.key_type,
            self.blob_type,
            self.real_type,
            self.table_options,
            self.inline_indexes,
            self.clustered,
            tables,
        )

    def connection_pool(self, reactor: Any, writer: bool, size: int) -> QuietConnectionPool:
        """A pool of ``size`` connections (threads), each configured for its role on opening."""
        args, kwargs = self.connect_arguments()
        return QuietConnectionPool(
            self.driver,
            *args,
            cp_min=1,
            cp_max=size,
            cp_reconnect=True,
            cp_noisy=False,
            cp_openfun=lambda connection: self.configure(connection, writer),
            cp_reactor=reactor,
            **kwargs,
        )

    def connect_arguments(self) -> tuple[tuple, dict[str, Any]]:
        """The driver's ``connect()`` arguments for this dialect's URL."""
        raise NotImplementedError

    def configure(self, connection: Any, writer: bool) -> None:
        """Set up a fresh connection for writing or for reading."""

    def connect(self) -> Any:
        """A new driver connection of its own, outside the pools."""
        args, kwargs = self.connect_arguments()
        return importlib.import_module(self.driver).connect(*args, **kwargs)

    @contextlib.contextmanager
    def transaction(self, cursor: Any, writer: bool) -> Iterator[None]:
        """Nothing to open: the driver opens a transaction at the first statement."""
        yield

    @contextlib.contextmanager
    def schema_lock(self, cursor: Any) -> Iterator[None]:
        """No lock beyond the writer's transaction."""
        yield

    def fault(self, error: BaseException) -> Fault | None:
        """Classify a driver exception."""
        raise NotImplementedError

    def database_size(self, session: Session) -> DatabaseSize:
        """The size of the store's tables, as this database measures it."""
        raise NotImplementedError

    def defragment(self, connection: Any) -> None:
        """Reclaim the space of deleted rows, this database's way."""
        raise NotImplementedError

    def announce(self, cursor: Any, channel: str, revision: int) -> None:
        """Nothing to do: this database cannot push notifications."""

    async def listen(self, reactor: Any, channel: str, observer: Callable[[int], None]) -> Any:
        """Nothing to listen to: other servers' commits are found by polling."""
        return None
