"""The store as a stage of the server: opened when the service starts, closed when it stops."""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.defer import Deferred

from k8s_sql.staged import StartingService
from k8s_sql.store.pool import TransactionObserver
from k8s_sql.store.store import SQLStore


class StoreService(StartingService):
    """Opens ``store`` on start, ready once it is open; closes it on stop.

    @param observers: told of every database transaction once the store is open
        (``Database.observe_transactions``): metrics, slow-transaction logs.
    """

    def __init__(self, store: SQLStore, observers: Sequence[TransactionObserver] = ()) -> None:
        super().__init__()
        self.store = store
        self.observers = tuple(observers)

    def begin(self) -> Deferred[SQLStore]:
        """Open the store."""
        return self.store.open()

    def begun(self, result: SQLStore) -> None:
        """Attach the transaction observers."""
        for observer in self.observers:
            self.store.database.observe_transactions(observer)

    def end(self) -> Deferred[None]:
        """Close the store."""
        return self.store.close()
