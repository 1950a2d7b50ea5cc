"""The member registry and the peer secret, in the database, on every backend."""

from __future__ import annotations

from typing import Any, Callable

import pytest
from twisted.internet.defer import DeferredList

from k8s_sql.store import open_store
from k8s_sql.store.errors import NameInUse
from k8s_sql.store.model import MemberRecord, PutRequest, RangeRequest
from k8s_sql.store.schema import SCHEMA_VERSION, SCHEMA_VERSION_ROW
from k8s_sql.store.session import Session

Run = Callable[..., Any]


def process(instance: int, name: str = "a", deadline: float = 110.0, **fields: Any) -> MemberRecord:
    """A registry row: by default, live until 110 s, in pid space ``space``, on port 1."""
    defaults: dict[str, Any] = dict(
        member_id=instance * 10,
        client_urls=("http://127.0.0.1:1",),
        peer_urls=(f"http://127.0.0.1:{instance}",),
        host="h",
        pid_space="space",
        pid=instance,
    )
    return MemberRecord(instance, name, deadline=deadline, **{**defaults, **fields})


def test_registered_processes_are_live_until_their_deadline(run: Run, store: Any) -> None:
    first = process(1)
    assert run(store.register_member, first, 100.0) == [first]
    second = process(2, "b", deadline=105.0, client_urls=("http://x:1", "https://x:2"), peer_urls=())
    assert run(store.register_member, second, 100.0) == [first, second]
    assert run(store.live_members, 105.0) == [first, second]
    assert run(store.live_members, 105.5) == [first]
    run(store.deregister_member, 1)
    assert run(store.live_members, 100.0) == [second]


def test_a_beat_moves_the_deadline_forgets_long_expired_rows_and_adds_a_lost_row_again(run: Run, store: Any) -> None:
    run(store.register_member, process(1, deadline=110.0), 100.0)
    run(store.register_member, process(2, "b", deadline=103.0), 100.0)
    run(store.register_member, process(3, "c", deadline=108.0), 100.0)
    beat = process(1, deadline=115.0)
    # At 105, b has expired; rows expired before 95 are forgotten (none).
    assert run(store.renew_member, beat, 105.0, 95.0) == ([beat, process(3, "c", deadline=108.0)], False)
    assert {row.instance for row in run(store.live_members, 0.0)} == {1, 2, 3}
    # At 109, rows expired before 104 (b) are deleted; c is past its deadline but kept a while.
    later = process(1, deadline=119.0)
    assert run(store.renew_member, later, 109.0, 104.0) == ([later], False)
    assert {row.instance for row in run(store.live_members, 0.0)} == {1, 3}
    run(store.deregister_member, 1)
    assert run(store.renew_member, later, 109.0, 104.0) == ([later], True)


def test_a_name_held_by_another_live_server_is_refused(run: Run, store: Any) -> None:
    holder = process(1)
    run(store.register_member, holder, 100.0)
    for other in (
        process(2, client_urls=("http://127.0.0.1:9",)),  # another port
        process(2, pid_space="elsewhere"),  # another host
        process(2, pid_space=""),  # unknown
    ):
        with pytest.raises(NameInUse) as in_use:
            run(store.register_member, other, 100.0)
        assert in_use.value.holders == (holder,)
    assert run(store.live_members, 100.0) == [holder]


def test_processes_of_one_server_share_its_name(run: Run, store: Any) -> None:
    """A worker process of the same server: same pid space, same client URLs."""
    run(store.register_member, process(1), 100.0)
    assert [row.instance for row in run(store.register_member, process(2), 100.0)] == [1, 2]


def test_an_expired_or_replaced_holder_gives_the_name_up(run: Run, store: Any) -> None:
    run(store.register_member, process(1, deadline=101.0), 100.0)
    run(store.register_member, process(2, "b"), 100.0)
    taker = process(3, client_urls=("http://127.0.0.1:9",))
    assert [row.instance for row in run(store.register_member, taker, 102.0)] == [3, 2]
    replacement = process(4, client_urls=("http://127.0.0.1:8",))
    assert [row.instance for row in run(store.register_member, replacement, 102.0, [3])] == [4, 2]


def test_two_servers_registering_one_name_at_once_do_not_both_get_it(run: Run, store: Any, opener: Any) -> None:
    other = opener()
    attempts = [
        store.register_member(process(1, client_urls=("http://127.0.0.1:1",)), 100.0),
        other.register_member(process(2, client_urls=("http://127.0.0.1:2",)), 100.0),
    ]
    outcomes = run(DeferredList, attempts, consumeErrors=True)
    assert sorted(ok for ok, _ in outcomes) == [False, True]
    assert [failure.check(NameInUse) for ok, failure in outcomes if not ok] == [NameInUse]
    assert len(run(store.live_members, 100.0)) == 1


def test_every_server_reads_the_same_peer_secret(run: Run, store: Any, opener: Any) -> None:
    assert len(store.peer_secret) == 32
    assert opener().peer_secret == store.peer_secret


def test_an_older_database_gets_the_new_tables_and_keeps_its_data(run: Run, backend: str, reactor: Any) -> None:
    store = run(open_store, backend, reactor)
    cluster_id = store.cluster_id
    run(store.put, PutRequest(b"k", b"v"))

    def downgrade(session: Session) -> None:
        for table in ("k8s_member", "k8s_secret"):
            session.run(f"DROP TABLE {table}")

    run(store.database.write, downgrade)
    run(store.close)
    reopened = run(open_store, backend, reactor)
    try:
        assert reopened.cluster_id == cluster_id and len(reopened.peer_secret) == 32
        assert run(reopened.range, RangeRequest(b"k")).kvs[0].value == b"v"
        assert run(reopened.register_member, process(1), 100.0) == [process(1)]
        version = run(reopened.database.read, lambda s: s.row("SELECT value FROM k8s_meta WHERE name = ?", SCHEMA_VERSION_ROW))
        assert version[0] == SCHEMA_VERSION
    finally:
        run(reopened.close)


def test_local_commit_observers_hear_this_store_s_commits_only(run: Run, store: Any, opener: Any) -> None:
    other = opener()
    heard: list[int] = []
    heard_elsewhere: list[int] = []
    run(store.notify_local_commits, heard.append)
    run(other.notify_local_commits, heard_elsewhere.append)
    revision = run(store.put, PutRequest(b"k")).revision
    run(other.signals.committed, revision)  # as a peer's signal would arrive
    assert heard == [revision] and heard_elsewhere == []
