"""Copies between databases of every backend, directly and through dump files, checked key
by key; refusing a non-empty target; revisions that never go backwards; verification."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from zope.interface.verify import verifyObject

from k8s_sql.migrate.database import StoreSink, StoreSource
from k8s_sql.migrate.dumpfile import DumpReader, DumpWriter
from k8s_sql.migrate.interfaces import ISnapshotSink, ISnapshotSource
from k8s_sql.migrate.snapshot import Pager
from k8s_sql.migrate.transfer import copy_snapshot
from k8s_sql.migrate.verify import verify
from k8s_sql.store.errors import NotEmpty
from k8s_sql.store.model import DeleteRangeRequest, PutRequest
from tests.migrate.support import LEASE_TTL, Databases, Run, call, everything, fill, leases, opened, progress

#: Each backend is a source once and a target once.
PAIRS = [("sqlite", "mysql"), ("mysql", "postgres"), ("postgres", "sqlite")]


@pytest.fixture
def databases(tmp_path: Path) -> Iterator[Databases]:
    made = Databases(tmp_path)
    yield made
    made.drop_all()


def assert_same(run: Run, reactor: Any, source: Any, target: Any, revision: int) -> None:
    """The target holds the source's keys at ``revision``, its leases, and that revision."""
    expected = everything(run, source, revision)
    assert len(expected) > 200
    assert everything(run, target) == expected
    assert run(target.current_revision) == revision
    assert run(target.compact_revision) == revision
    now = reactor.seconds()
    theirs, mine = leases(run, source, now), leases(run, target, now)
    assert {lease: granted for lease, (granted, _) in theirs.items()} == {lease: granted for lease, (granted, _) in mine.items()}
    for lease, (_, left) in mine.items():
        assert theirs[lease][1] - 5 <= left <= theirs[lease][1]


@pytest.mark.parametrize("source_backend, target_backend", PAIRS)
def test_a_direct_copy_keeps_keys_revisions_and_leases(
    run: Run, reactor: Any, databases: Databases, source_backend: str, target_backend: str
) -> None:
    with opened(run, reactor, databases.new(source_backend)) as source, opened(run, reactor, databases.new(target_backend)) as target:
        fill(run, source, reactor)
        revision = run(source.current_revision)
        snapshot = StoreSource(source, reactor, "source", Pager(first=7, most=50))
        sink = StoreSink(target, reactor)
        header = call(run, copy_snapshot, snapshot, sink, progress(reactor))
        assert (header.revision, header.keys) == (revision, len(everything(run, source)))
        assert header.compact_revision == run(source.compact_revision) > 0
        assert sink.revision == revision
        assert_same(run, reactor, source, target, revision)
        report = call(run, verify, snapshot, StoreSource(target, reactor, "target"), progress(reactor), revision)
        assert report.ok and report.keys == header.keys
        # The target carries on from the source's revision, each key from its own version.
        put = run(target.put, PutRequest(b"/registry/pods/ns1/pod-00001", b"new", prev_kv=True))
        assert put.revision == revision + 1
        assert put.prev_kv == everything(run, source)[[kv.key for kv in everything(run, source)].index(b"/registry/pods/ns1/pod-00001")]


@pytest.mark.parametrize("source_backend, target_backend", PAIRS)
def test_export_then_import_keeps_keys_revisions_and_leases(
    run: Run, reactor: Any, databases: Databases, tmp_path: Path, source_backend: str, target_backend: str
) -> None:
    path = str(tmp_path / ("dump.k8s.gz" if target_backend == "sqlite" else "dump.k8s"))
    with opened(run, reactor, databases.new(source_backend)) as source, opened(run, reactor, databases.new(target_backend)) as target:
        fill(run, source, reactor)
        revision = run(source.current_revision)
        exported = call(run, copy_snapshot, StoreSource(source, reactor, "the source"), DumpWriter(path, reactor), progress(reactor))
        reader = DumpReader(path, reactor, batch_keys=16)
        imported = call(run, copy_snapshot, reader, StoreSink(target, reactor), progress(reactor))
        assert imported == exported
        assert (imported.revision, imported.source) == (revision, "the source")
        assert_same(run, reactor, source, target, revision)
        assert call(run, verify, reader, StoreSource(target, reactor, "target"), progress(reactor), revision).ok


def test_the_ends_provide_their_interfaces(run: Run, reactor: Any, store: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "dump")
    for source in (StoreSource(store, reactor, "s"), DumpReader(path, reactor)):
        assert verifyObject(ISnapshotSource, source)
    for sink in (StoreSink(store, reactor), DumpWriter(path, reactor)):
        assert verifyObject(ISnapshotSink, sink)


def test_a_copy_reads_the_source_at_one_revision(run: Run, reactor: Any, databases: Databases) -> None:
    with opened(run, reactor, databases.new("sqlite")) as source, opened(run, reactor, databases.new("sqlite")) as target:
        fill(run, source, reactor)
        revision = run(source.current_revision)
        before = everything(run, source)
        for i in range(20):
            run(source.put, PutRequest(b"/registry/pods/ns0/pod-%05d" % (7 * i), b"later"))
        run(source.delete_range, DeleteRangeRequest(b"\x00", b"/"))
        run(source.put, PutRequest(b"/registry/zzz", b"later"))
        call(run, copy_snapshot, StoreSource(source, reactor, "s", Pager(first=3, most=3)), StoreSink(target, reactor), progress(reactor), revision)
        assert everything(run, target) == before
        assert run(target.current_revision) == revision


def test_a_target_that_holds_data_is_refused_unless_forced(run: Run, reactor: Any, databases: Databases) -> None:
    with opened(run, reactor, databases.new("sqlite")) as source, opened(run, reactor, databases.new("sqlite")) as target:
        fill(run, source, reactor)
        revision = run(source.current_revision)
        run(target.put, PutRequest(b"already", b"here"))
        with pytest.raises(NotEmpty):
            call(run, copy_snapshot, StoreSource(source, reactor, "s"), StoreSink(target, reactor), progress(reactor))
        assert [kv.key for kv in everything(run, target)] == [b"already"]
        call(run, copy_snapshot, StoreSource(source, reactor, "s"), StoreSink(target, reactor, replace=True), progress(reactor))
        assert everything(run, target) == everything(run, source)
        assert run(target.current_revision) == revision


def test_replacing_a_target_further_on_never_moves_its_revision_back(run: Run, reactor: Any, databases: Databases) -> None:
    with opened(run, reactor, databases.new("sqlite")) as source, opened(run, reactor, databases.new("sqlite")) as target:
        fill(run, source, reactor, keys=20)
        revision = run(source.current_revision)
        for _ in range(revision + 50):
            run(target.put, PutRequest(b"busy", b"v"))
        ahead = run(target.current_revision)
        sink = StoreSink(target, reactor, replace=True)
        call(run, copy_snapshot, StoreSource(source, reactor, "s"), sink, progress(reactor))
        assert sink.revision == ahead == run(target.current_revision) > revision
        assert everything(run, target) == everything(run, source)
        assert run(target.put, PutRequest(b"next", b"v")).revision == ahead + 1


def test_a_key_whose_lease_is_gone_from_the_source_gets_it_back_expired(run: Run, reactor: Any, databases: Databases) -> None:
    with opened(run, reactor, databases.new("sqlite")) as source, opened(run, reactor, databases.new("sqlite")) as target:
        now = reactor.seconds()
        run(source.lease_grant, 99, LEASE_TTL, now)
        run(source.put, PutRequest(b"leased", b"v", lease=99))
        run(source.put, PutRequest(b"plain", b"v"))
        revision = run(source.current_revision)
        run(source.lease_revoke, 99)
        call(run, copy_snapshot, StoreSource(source, reactor, "s"), StoreSink(target, reactor), progress(reactor), revision)
        assert [kv.key for kv in everything(run, target)] == [b"leased", b"plain"]
        assert run(target.lease_time_to_live, 99, False, reactor.seconds()).ttl == -1
        assert run(target.expire_leases, reactor.seconds() + 0.001, 10) == [99]
        assert [kv.key for kv in everything(run, target)] == [b"plain"]


def test_verification_reports_each_difference(run: Run, reactor: Any, databases: Databases) -> None:
    with opened(run, reactor, databases.new("sqlite")) as source, opened(run, reactor, databases.new("sqlite")) as target:
        fill(run, source, reactor, keys=30)
        revision = run(source.current_revision)
        call(run, copy_snapshot, StoreSource(source, reactor, "s"), StoreSink(target, reactor), progress(reactor))
        run(target.put, PutRequest(b"a", b"changed"))
        run(target.delete_range, DeleteRangeRequest(b"ab"))
        run(target.put, PutRequest(b"b-extra", b"x"))
        run(target.lease_revoke, 7002)
        report = call(run, verify, StoreSource(source, reactor, "s"), StoreSource(target, reactor, "t"), progress(reactor), revision)
        assert not report.ok
        problems = "\n".join(report.problems)
        assert "key b'a' differs: values differ" in problems and "mod_revision" in problems
        assert "key b'ab' is missing from the target" in problems
        assert "key b'b-extra' is in the target only" in problems
        assert "lease 7002 is missing from the target" in problems
        # The keys lease 7002 held are gone from the target too.
        assert report.count == 4 + sum(kv.lease == 7002 for kv in everything(run, source, revision))


def test_verification_refuses_a_target_behind_the_source(run: Run, reactor: Any, databases: Databases) -> None:
    with opened(run, reactor, databases.new("sqlite")) as source, opened(run, reactor, databases.new("sqlite")) as target:
        run(source.put, PutRequest(b"k", b"v"))
        run(source.put, PutRequest(b"k", b"v"))
        run(target.put, PutRequest(b"k", b"v"))
        report = call(run, verify, StoreSource(source, reactor, "s"), StoreSource(target, reactor, "t"), progress(reactor))
        assert report.problems[0] == "the target's revision 2 is below the source's 3"
        assert report.problems[1].startswith("key b'k' differs")
        assert report.count == 2
        assert report.keys == 1
