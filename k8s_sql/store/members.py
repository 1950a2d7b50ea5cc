"""The member registry: one row per server process running on the database.

A process registers at start, moves its row's deadline forward at every heartbeat and
deletes its row when it stops; a row whose deadline has passed belongs to a process that
stopped beating, and is left out of the live members (and deleted a while later).
Registrations take the revision counter's lock, which serializes them among servers, so
two servers starting at once with one name cannot both register it.
"""

from __future__ import annotations

from collections.abc import Collection

from k8s_sql.store.errors import NameInUse
from k8s_sql.store.model import MemberRecord
from k8s_sql.store.session import Session

_COLUMNS = "instance, name, member_id, client_urls, peer_urls, host, pid_space, pid, deadline"
_INSERT = f"INSERT INTO k8s_member ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_LIVE = f"SELECT {_COLUMNS} FROM k8s_member WHERE deadline >= ? ORDER BY name, instance"
_OWN = "SELECT deadline FROM k8s_member WHERE instance = ?"
_LOCK = "SELECT revision FROM k8s_revision WHERE id = 1"


def _urls(text: str) -> tuple[str, ...]:
    return tuple(url for url in text.split("\n") if url)


def _insert(session: Session, record: MemberRecord) -> None:
    session.run(
        _INSERT,
        record.instance,
        record.name,
        record.member_id,
        "\n".join(record.client_urls),
        "\n".join(record.peer_urls),
        record.host,
        record.pid_space,
        record.pid,
        record.deadline,
    )


def live(session: Session, now: float) -> list[MemberRecord]:
    """The rows whose deadline is not before ``now``, by name."""
    return [
        MemberRecord(instance, name, member_id, _urls(clients), _urls(peers), host, pid_space, pid, deadline)
        for instance, name, member_id, clients, peers, host, pid_space, pid, deadline in session.all(_LIVE, now)
    ]


def register(session: Session, record: MemberRecord, now: float, replace: Collection[int]) -> list[MemberRecord]:
    """Add ``record`` (first deleting the rows of the instances in ``replace``); return the
    live members, ``record`` among them.

    Raises ``NameInUse`` when live rows with ``record``'s name belong to another server
    (``MemberRecord.same_server``).
    """
    session.one(_LOCK + session.dialect.lock_suffix)
    for instance in (*replace, record.instance):
        session.run("DELETE FROM k8s_member WHERE instance = ?", instance)
    holders = tuple(
        other for other in live(session, now) if other.name == record.name and not record.same_server(other)
    )
    if holders:
        raise NameInUse(holders)
    _insert(session, record)
    return live(session, now)


def renew(session: Session, record: MemberRecord, now: float, forget_before: float) -> tuple[list[MemberRecord], bool]:
    """Move ``record``'s deadline to its own, inserting its row again if it was gone, and
    delete the rows expired before ``forget_before``; return the live members, and whether
    the row had been gone."""
    found = session.one(_OWN + session.dialect.lock_suffix, record.instance)
    if found is None:
        _insert(session, record)
    else:
        session.run("UPDATE k8s_member SET deadline = ? WHERE instance = ?", record.deadline, record.instance)
    session.run("DELETE FROM k8s_member WHERE deadline < ?", forget_before)
    return live(session, now), found is None


def deregister(session: Session, instance: int) -> None:
    """Delete the row of ``instance``."""
    session.run("DELETE FROM k8s_member WHERE instance = ?", instance)
