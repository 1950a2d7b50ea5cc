"""Watches across k8s-sql processes sharing one database, restarts and compaction, end to end.

Every server here is a real ``python -m k8s_sql`` child process; clients are grpcio.
"""

from __future__ import annotations

import threading
import time

import pytest

from k8s_sql.proto import kv_pb2, rpc_pb2
from tests.etcdclient import EtcdClient
from tests.processes import K8sSQL
from tests.watch.servers import WatchSession, put

POLL = ("--poll-interval", "0.2")


def watch_from(client: EtcdClient, start_revision: int) -> WatchSession:
    """A prefix watch on ``/w/`` from ``start_revision``, created and acknowledged."""
    session = WatchSession(client)
    session.create(b"/w/", range_end=b"/w0", start_revision=start_revision, prev_kv=True)
    created = session.next()
    assert created.created, created
    return session


def test_a_watch_on_one_server_sees_every_write_through_another(backend: str) -> None:
    with K8sSQL(backend, *POLL, "--name", "first") as first, K8sSQL(backend, *POLL, "--name", "second") as second:
        with EtcdClient(first.endpoint) as watching, EtcdClient(second.endpoint) as writing:
            session = watch_from(watching, 0)
            revisions = []
            started = time.monotonic()
            for number in range(60):
                revisions.append(put(writing, b"/w/%d" % (number % 9), b"%d" % number))
            received = session.events_until(revisions[-1])
            elapsed = time.monotonic() - started
            session.half_close()
    assert [revision for _, _, revision in received] == revisions
    assert revisions == list(range(revisions[0], revisions[0] + 60))
    assert elapsed < 30


@pytest.mark.parametrize("backend", ["mysql", "postgres"], indirect=True)
def test_watchers_resume_without_gap_after_a_server_restarts(backend: str) -> None:
    """Writes go on through one server while the watched one restarts; the watch resumes at
    the client's last revision + 1 and misses nothing."""
    with K8sSQL(backend, *POLL, "--name", "writer") as writer:
        with EtcdClient(writer.endpoint) as writing:
            stop = threading.Event()
            written: list[int] = []

            def keep_writing() -> None:
                number = 0
                while not stop.is_set():
                    written.append(put(writing, b"/w/%d" % (number % 5), b"%d" % number))
                    number += 1
                    time.sleep(0.01)

            thread = threading.Thread(target=keep_writing)
            thread.start()
            try:
                watched = K8sSQL(backend, *POLL, "--name", "watched")
                with EtcdClient(watched.endpoint) as client:
                    session = watch_from(client, 0)
                    while len(written) < 20:
                        time.sleep(0.05)
                    before = session.events_until(written[-1])
                watched.stop()
                with K8sSQL(backend, *POLL, "--name", "watched") as restarted, EtcdClient(restarted.endpoint) as client:
                    session = watch_from(client, before[-1][2] + 1)
                    time.sleep(0.5)
                    stop.set()
                    thread.join()
                    after = session.events_until(written[-1])
                    session.half_close()
            finally:
                stop.set()
                thread.join()
    seen = [revision for _, _, revision in before + after]
    assert seen == list(range(seen[0], written[-1] + 1))
    assert seen == [revision for revision in written if revision >= seen[0]]


def test_a_watch_behind_compaction_is_cancelled_with_the_compact_revision(backend: str) -> None:
    with K8sSQL(backend) as server, EtcdClient(server.endpoint) as client:
        revisions = [put(client, b"/w/k", b"%d" % number) for number in range(10)]
        live = watch_from(client, revisions[-1] + 1)
        client.KV.Compact(rpc_pb2.CompactionRequest(revision=revisions[5], physical=True), timeout=10)
        late = WatchSession(client)
        late.create(b"/w/", range_end=b"/w0", start_revision=revisions[2])
        created, cancelled = late.next(), late.next()
        assert created.created and not created.canceled
        assert cancelled.canceled and cancelled.compact_revision == revisions[5] and not cancelled.events
        at_compaction = watch_from(client, revisions[5] + 1)
        assert at_compaction.events_until(revisions[-1])[0][2] == revisions[6]
        newest = put(client, b"/w/k", b"after")
        event = live.next().events[0]
        assert (event.type, event.kv.mod_revision, event.prev_kv.value) == (kv_pb2.Event.PUT, newest, b"9")
        for session in (late, at_compaction, live):
            session.half_close()
