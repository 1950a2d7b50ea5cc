"""The tables of the revision log, and their creation on first start.

``k8s_log`` holds one row per change of a key, identified by ``(revision, sub)``; its
``prev_revision``/``prev_sub`` point at the key's live version as of the revision before
(``0`` when the key did not exist then), which is an event's ``prev_kv`` and what
compaction deletes once the change is compacted.  ``k8s_kv`` is the live state, one row per
key.  ``k8s_revision`` is the one counter row every write locks.  ``k8s_meta`` holds the
schema version, the cluster ID, the compaction points and raised alarms; ``k8s_lease`` the leases.
``k8s_member`` is the registry of the servers running on the database, one row per server
process (``k8s_sql.store.members``); ``k8s_secret`` holds the random secret that
authenticates their commit signals to each other (``k8s_sql.cluster``).

Tables are only ever added, never changed, within a schema version: a newer k8s-sql creates
the tables it adds on its first start on an older database, whose version stays, so older
servers keep running on it (they ignore those tables).
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Collection

from k8s_sql.store.errors import SchemaTooNew
from k8s_sql.store.session import Session

SCHEMA_VERSION = 1

#: ``k8s_meta`` rows; the compaction points start at -1, "never compacted", as etcd's.
SCHEMA_VERSION_ROW = "schema_version"
CLUSTER_ID_ROW = "cluster_id"
COMPACT_ROW = "compact_revision"
PHYSICAL_ROW = "compacted_physically"

#: ``k8s_secret`` rows: the secret of the servers' commit signals to each other.
PEER_SECRET_ROW = "peer_secret"
#: Bytes of that secret.
PEER_SECRET_BYTES = 32

TABLES = ("k8s_meta", "k8s_revision", "k8s_log", "k8s_kv", "k8s_lease", "k8s_member", "k8s_secret")


_INDEXES = {
    "k8s_log": [("k8s_log_key", "k, revision")],
    "k8s_kv": [("k8s_kv_lease", "lease, k")],
    "k8s_lease": [("k8s_lease_deadline", "deadline")],
}


#: Where tables are stored in their primary key (SQLite WITHOUT ROWID, InnoDB), counting a
#: range of keys would read every value in it: a narrow index of the keys alone serves counts.
KEY_INDEX = "k8s_kv_key"


def statements(
    key: str,
    blob: str,
    real: str,
    table_options: str = "",
    inline_indexes: bool = False,
    clustered: bool = False,
    tables: Collection[str] = TABLES,
) -> list[str]:
    """The DDL creating ``tables`` (default: all) with their indexes, given one database's column types.

    Every statement is idempotent.  ``inline_indexes`` declares indexes inside
    ``CREATE TABLE``, for databases without ``CREATE INDEX IF NOT EXISTS`` (MySQL);
    ``clustered`` says that tables are stored in their primary key.
    """
    columns = {
        "k8s_meta": "name VARCHAR(64) NOT NULL PRIMARY KEY, value BIGINT NOT NULL",
        "k8s_revision": "id INTEGER NOT NULL PRIMARY KEY, revision BIGINT NOT NULL",
        "k8s_log": (
            f"revision BIGINT NOT NULL, sub INTEGER NOT NULL, k {key} NOT NULL, create_revision BIGINT NOT NULL,"
            f" version BIGINT NOT NULL, lease BIGINT NOT NULL, value {blob} NOT NULL, deleted SMALLINT NOT NULL,"
            " prev_revision BIGINT NOT NULL, prev_sub INTEGER NOT NULL, PRIMARY KEY (revision, sub)"
        ),
        "k8s_kv": (
            f"k {key} NOT NULL PRIMARY KEY, create_revision BIGINT NOT NULL, mod_revision BIGINT NOT NULL,"
            f" sub INTEGER NOT NULL, version BIGINT NOT NULL, lease BIGINT NOT NULL, value {blob} NOT NULL"
        ),
        "k8s_lease": f"id BIGINT NOT NULL PRIMARY KEY, ttl BIGINT NOT NULL, deadline {real} NOT NULL",
        "k8s_member": (
            "instance BIGINT NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL, member_id BIGINT NOT NULL,"
            " client_urls TEXT NOT NULL, peer_urls TEXT NOT NULL, host VARCHAR(255) NOT NULL,"
            f" pid_space VARCHAR(255) NOT NULL, pid BIGINT NOT NULL, deadline {real} NOT NULL"
        ),
        "k8s_secret": f"name VARCHAR(64) NOT NULL PRIMARY KEY, value {blob} NOT NULL",
    }
    ddl = []
    for table in (table for table in TABLES if table in tables):
        indexes = _INDEXES.get(table, []) + ([(KEY_INDEX, "k")] if clustered and table == "k8s_kv" else [])
        inline = "".join(f", INDEX {name} ({cols})" for name, cols in indexes) if inline_indexes else ""
        ddl.append(f"CREATE TABLE IF NOT EXISTS {table} ({columns[table]}{inline}){table_options}")
        if not inline_indexes:
            ddl += [f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({cols})" for name, cols in indexes]
    return ddl


def ensure(session: Session, rng: random.Random) -> tuple[int, bytes]:
    """Create the schema, or the tables of it missing, if any; return the cluster ID and the
    servers' peer secret.

    Raises ``SchemaTooNew`` when a newer k8s-sql created the schema.  Several servers may
    start on one empty database at once: the dialect's schema lock lets one create it.
    The version row is written last, so a creation cut short is completed on next start.
    """
    with session.dialect.schema_lock(session.cursor):
        tables = {row[0] for row in session.all(session.dialect.tables_statement)}
        found = _meta(session, SCHEMA_VERSION_ROW) if "k8s_meta" in tables else None
        if found is not None and found > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"the database schema has version {found}, newer than version {SCHEMA_VERSION} "
                "that this k8s-sql understands: upgrade k8s-sql"
            )
        if found != SCHEMA_VERSION or not tables.issuperset(TABLES):
            _create(session, rng, found, [table for table in TABLES if table not in tables])
        cluster_id = session.row("SELECT value FROM k8s_meta WHERE name = ?", CLUSTER_ID_ROW)[0]
        return cluster_id, bytes(session.row("SELECT value FROM k8s_secret WHERE name = ?", PEER_SECRET_ROW)[0])


def _create(session: Session, rng: random.Random, version: int | None, missing: Collection[str]) -> None:
    """Create the ``missing`` tables with their indexes, and every first row missing.

    Only missing tables: a statement creating what exists draws a notice, which PostgreSQL's
    pipeline mode (the writers') then takes for the answer of the next query.  A table is
    created with its indexes in one transaction, or one statement (MySQL), so none exists
    without them.
    """
    for ddl in session.dialect.schema(missing):
        session.run(ddl)
    if _meta(session, CLUSTER_ID_ROW) is None:
        session.run("INSERT INTO k8s_meta (name, value) VALUES (?, ?)", CLUSTER_ID_ROW, rng.randrange(1, 2**63))
    for name in (COMPACT_ROW, PHYSICAL_ROW):
        if _meta(session, name) is None:
            session.run("INSERT INTO k8s_meta (name, value) VALUES (?, -1)", name)
    if session.one("SELECT revision FROM k8s_revision WHERE id = 1") is None:
        session.run("INSERT INTO k8s_revision (id, revision) VALUES (1, 1)")
    if session.one("SELECT name FROM k8s_secret WHERE name = ?", PEER_SECRET_ROW) is None:
        secret = secrets.token_bytes(PEER_SECRET_BYTES)
        session.run("INSERT INTO k8s_secret (name, value) VALUES (?, ?)", PEER_SECRET_ROW, secret)
    if version is None:
        session.run("INSERT INTO k8s_meta (name, value) VALUES (?, ?)", SCHEMA_VERSION_ROW, SCHEMA_VERSION)


def _meta(session: Session, name: str) -> int | None:
    row = session.one("SELECT value FROM k8s_meta WHERE name = ?", name)
    return None if row is None else row[0]
