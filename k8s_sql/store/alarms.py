"""Alarms: raised and cleared per member, kept as ``k8s_meta`` rows so every server sees them.

An alarm is the row ``alarm/<member ID>/<type>`` whose value is the type's number.  Raising
and clearing take the revision counter's lock, which serializes them among servers.
"""

from __future__ import annotations

from k8s_sql.store.model import Alarm, AlarmType
from k8s_sql.store.session import Session

_PREFIX = "alarm/"
_LOCK = "SELECT revision FROM k8s_revision WHERE id = 1"


def _name(member_id: int, alarm: AlarmType) -> str:
    return f"{_PREFIX}{member_id}/{int(alarm)}"


def raised(session: Session) -> list[Alarm]:
    """Every raised alarm, by type, then member."""
    rows = session.all("SELECT name, value FROM k8s_meta WHERE name LIKE ?", _PREFIX + "%")
    alarms = [Alarm(int(name.split("/")[1]), AlarmType(value)) for name, value in rows]
    return sorted(alarms, key=lambda alarm: (alarm.alarm, alarm.member_id))


def activate(session: Session, member_id: int, alarm: AlarmType) -> Alarm:
    """Raise ``alarm`` for ``member_id`` unless it is raised already."""
    session.one(_LOCK + session.dialect.lock_suffix)
    name = _name(member_id, alarm)
    if session.one("SELECT value FROM k8s_meta WHERE name = ?", name) is None:
        session.run("INSERT INTO k8s_meta (name, value) VALUES (?, ?)", name, int(alarm))
    return Alarm(member_id, alarm)


def deactivate(session: Session, member_id: int, alarm: AlarmType) -> Alarm | None:
    """Clear ``alarm`` for ``member_id``; the alarm cleared, or ``None`` if it was not raised."""
    session.one(_LOCK + session.dialect.lock_suffix)
    name = _name(member_id, alarm)
    if session.one("SELECT value FROM k8s_meta WHERE name = ?", name) is None:
        return None
    session.run("DELETE FROM k8s_meta WHERE name = ?", name)
    return Alarm(member_id, alarm)
