"""An adbapi ``ConnectionPool`` that drops dead connections without logging tracebacks.

``twisted.enterprise.adbapi`` logs "Rollback failed" with a traceback when a transaction
fails on a connection that is gone (twice: once in ``Connection.rollback``, once in
``ConnectionPool._runInteraction``), and "Connection close failed" when closing it fails.
A database restart therefore filled the log with tracebacks, one or more per request
under way.  Here a connection that cannot roll back is dropped quietly: the transaction's
own error is still raised, and the store reports the outage once
(``k8s_sql.store.outage``).

A pool may also hold a lock around each interaction, its transaction and commit
(``interaction_lock``): SQLite's writer takes a file lock there (``k8s_sql.store.filelock``).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

from twisted.enterprise import adbapi
from twisted.logger import Logger


class QuietConnection(adbapi.Connection):
    """A pooled connection whose failed rollback drops it and raises ``ConnectionLost``
    without logging."""

    def rollback(self) -> None:
        """Roll back, and check that the connection still answers; drop it if not."""
        connection: Any = self._connection
        try:
            connection.rollback()
            cursor = connection.cursor()
            cursor.execute(self._pool.good_sql)
            cursor.close()
            connection.commit()
        except Exception:
            self._pool.disconnect(connection)
            raise adbapi.ConnectionLost() from None


class QuietConnectionPool(adbapi.ConnectionPool):
    """A ``ConnectionPool`` (always reconnecting) that drops lost connections quietly."""

    log = Logger()
    connectionFactory = QuietConnection
    #: Held around each interaction, from before its first statement to after its commit.
    interaction_lock: AbstractContextManager[Any] = nullcontext()

    def _runInteraction(self, interaction: Any, *args: Any, **kw: Any) -> Any:
        with self.interaction_lock:
            return self._interact(interaction, *args, **kw)

    def _interact(self, interaction: Any, *args: Any, **kw: Any) -> Any:
        connection = self.connectionFactory(self)
        transaction = self.transactionFactory(self, connection)
        try:
            result = interaction(transaction, *args, **kw)
            transaction.close()
            connection.commit()
            return result
        except BaseException:
            try:
                connection.rollback()
            except adbapi.ConnectionLost:
                pass  # dropped; the error raised below tells why the transaction failed
            except Exception:
                self.log.failure("Rollback failed")
            raise

    def finalClose(self) -> None:
        """Close the connections, and the interaction lock's file if it has one."""
        super().finalClose()
        close = getattr(self.interaction_lock, "close", None)
        if close is not None:
            close()

    def _close(self, connection: Any) -> None:
        try:
            connection.close()
        except Exception as error:
            self.log.debug("closing a lost connection failed: {error}", error=error)
