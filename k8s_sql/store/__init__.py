"""The revision log: etcd's KV, watch-feed and lease semantics on a SQL database.

``open_store(url, reactor)`` connects to SQLite, MySQL/MariaDB or PostgreSQL and fires with
an ``IStore``.  See ``docs/backends.md``.
"""

from k8s_sql.store.store import SQLStore, open_store
from k8s_sql.store.url import DEFAULT_URL

__all__ = ["DEFAULT_URL", "SQLStore", "open_store"]
