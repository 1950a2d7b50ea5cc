"""An etcd snapshot file as a copy's source: a k8s-sql store snapshotted to a file and loaded
into a store of every backend holds the same keys, leases and revision, whatever the sizes
of the scratch batches and of the pages read."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from zope.interface.verify import verifyObject

from k8s_sql.migrate import snapfile
from k8s_sql.migrate.database import StoreSink, StoreSource
from k8s_sql.migrate.interfaces import ISnapshotSource
from k8s_sql.migrate.snapfile import SnapshotFileSource
from k8s_sql.migrate.transfer import copy_snapshot
from k8s_sql.migrate.verify import verify
from k8s_sql.snapshot.bbolt import SnapshotError
from k8s_sql.snapshot.layout import Member, write_snapshot
from tests.migrate.support import Run, call, everything, fill, leases, opened, progress


def snapshot_file(run: Run, reactor: Any, store: Any, path: Path) -> None:
    """``store`` as ``etcdctl snapshot save`` saves it: the file, then its sha256."""
    now = reactor.seconds()
    with open(path, "wb+") as file:
        size = run(store.snapshot, lambda history: write_snapshot(file, history, Member(1, 1), now))
        file.seek(0)
        digest = hashlib.sha256(file.read(size)).digest()
        file.write(digest)


@pytest.mark.parametrize("scratch_batch, batch_keys, batch_bytes", [(1000, 1000, 4 << 20), (3, 7, 2000)])
def test_a_snapshot_file_loads_the_keys_leases_and_revision_it_holds(
    run: Run, reactor: Any, backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    scratch_batch: int, batch_keys: int, batch_bytes: int,
) -> None:
    monkeypatch.setattr(snapfile, "SCRATCH_BATCH", scratch_batch)
    path = tmp_path / "snapshot.db"
    with opened(run, reactor, f"sqlite:///{tmp_path}/source.db") as source, opened(run, reactor, backend) as target:
        fill(run, source, reactor)
        revision = run(source.current_revision)
        snapshot_file(run, reactor, source, path)
        reader = SnapshotFileSource(str(path), reactor, batch_keys=batch_keys, batch_bytes=batch_bytes)
        assert verifyObject(ISnapshotSource, reader)
        try:
            header = call(run, copy_snapshot, reader, StoreSink(target, reactor), progress(reactor))
            assert (header.revision, header.keys) == (revision, len(everything(run, source)))
            assert header.compact_revision == run(source.compact_revision)
            assert everything(run, target) == everything(run, source)
            assert run(target.current_revision) == revision
            now = reactor.seconds()
            theirs, mine = leases(run, source, now), leases(run, target, now)
            assert {lease: granted for lease, (granted, _) in mine.items()} == {
                lease: granted for lease, (granted, _) in theirs.items()
            }
            for lease, (_, left) in mine.items():
                assert theirs[lease][1] - 5 <= left <= theirs[lease][1] + 1
            report = call(run, verify, reader, StoreSource(target, reactor, "target"), progress(reactor), revision)
            assert report.ok and report.keys == header.keys
        finally:
            call(run, reader.close)


def test_a_file_without_the_sha256_trailer_needs_skip_hash_check(run: Run, reactor: Any, tmp_path: Path) -> None:
    path = tmp_path / "db"
    with opened(run, reactor, f"sqlite:///{tmp_path}/source.db") as source:
        fill(run, source, reactor, keys=20)
        snapshot_file(run, reactor, source, path)
    path.write_bytes(path.read_bytes()[:-32])  # a data directory's member/snap/db has no trailer
    with pytest.raises(SnapshotError, match="--skip-hash-check"):
        call(run, SnapshotFileSource(str(path), reactor).open)
    reader = SnapshotFileSource(str(path), reactor, skip_hash_check=True)
    assert call(run, reader.open).keys > 0
    with pytest.raises(SnapshotError, match="holds revision"):
        call(run, reader.open, 1)
    call(run, reader.close)
