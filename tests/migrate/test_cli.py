"""The ``k8s-sql-migrate`` command line, run as a child process on databases of every backend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from k8s_sql.store.model import PutRequest
from tests.migrate.support import Databases, Run, everything, fill, migrate, opened
from tests.processes import SOURCE_ROOT


@pytest.fixture
def databases(tmp_path: Path) -> Iterator[Databases]:
    made = Databases(tmp_path)
    yield made
    made.drop_all()


@pytest.fixture
def filled(run: Run, reactor: Any, databases: Databases) -> str:
    """A SQLite database holding sample data."""
    url = databases.new("sqlite")
    with opened(run, reactor, url) as store:
        fill(run, store, reactor, keys=100)
    return url


def test_export_to_a_pipe_into_import(run: Run, reactor: Any, databases: Databases, filled: str) -> None:
    target = databases.new("postgres")
    command = [sys.executable, "-m", "k8s_sql.migrate"]
    exporting = subprocess.Popen([*command, "export", "--from", filled, "--file", "-"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, cwd=SOURCE_ROOT)
    importing = subprocess.run([*command, "import", "--file", "-", "--to", target], stdin=exporting.stdout,
                               capture_output=True, text=True, timeout=300, cwd=SOURCE_ROOT)
    exporting.stdout.close()
    assert exporting.wait(60) == 0, exporting.stderr.read()
    assert importing.returncode == 0, importing.stderr
    assert "imported - (database sqlite:///" in importing.stderr
    with opened(run, reactor, filled) as source, opened(run, reactor, target) as copy:
        assert everything(run, copy) == everything(run, source)
        assert run(copy.current_revision) == run(source.current_revision)


def test_a_copy_between_databases_with_verification(databases: Databases, filled: str) -> None:
    target = databases.new("mysql")
    result = migrate("copy", "--from", filled, "--to", target, "--verify", "-q")
    lines = result.stderr.splitlines()
    assert lines[0].startswith("copied ") and " keys and 2 leases " in lines[0]
    assert lines[1].startswith(f"copied database {filled} at revision ")
    assert lines[-1].startswith(f"verified: {target} holds the source's ")
    assert migrate("verify", "--from", filled, "--to", target).returncode == 0


def test_a_target_with_data_is_refused_unless_forced(run: Run, reactor: Any, databases: Databases, filled: str, tmp_path: Path) -> None:
    target = databases.new("sqlite")
    with opened(run, reactor, target) as store:
        run(store.put, PutRequest(b"precious", b"v"))
    refused = migrate("copy", "--from", filled, "--to", target, check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip().endswith("k8s-sql-migrate copy: the target database holds keys or leases: use --force to replace them")
    dump = tmp_path / "dump"
    migrate("export", "--from", filled, "--file", str(dump))
    assert migrate("export", "--from", filled, "--file", str(dump), check=False).returncode == 1
    assert migrate("import", "--file", str(dump), "--to", target, check=False).returncode == 1
    migrate("import", "--file", str(dump), "--to", target, "--force", "--verify")
    with opened(run, reactor, filled) as source, opened(run, reactor, target) as store:
        assert everything(run, store) == everything(run, source)


def test_a_database_is_never_copied_onto_itself(run: Run, reactor: Any, filled: str) -> None:
    directory, _, name = filled.rpartition("/")
    same = f"{directory}/./{name}"
    result = migrate("copy", "--from", filled, "--to", same, "--force", check=False)
    assert result.returncode == 1 and "--from and --to name the same database (cluster ID" in result.stderr
    with opened(run, reactor, filled) as store:
        assert len(everything(run, store)) > 50


def test_verification_failures_exit_1_and_are_listed(run: Run, reactor: Any, databases: Databases, filled: str) -> None:
    target = databases.new("sqlite")
    migrate("copy", "--from", filled, "--to", target)
    with opened(run, reactor, target) as store:
        run(store.put, PutRequest(b"a", b"changed"))
    with opened(run, reactor, filled) as source:
        revision = run(source.current_revision)
    result = migrate("verify", "--from", filled, "--to", target, "--revision", str(revision), check=False)
    assert result.returncode == 1
    assert "  key b'a' differs: values differ" in result.stderr
    assert "verification failed: 1 differences" in result.stderr


def test_a_damaged_dump_is_reported(tmp_path: Path, filled: str) -> None:
    dump = tmp_path / "dump"
    migrate("export", "--from", filled, "--file", str(dump))
    dump.write_bytes(dump.read_bytes()[:-3])
    result = migrate("import", "--file", str(dump), "--to", f"sqlite:///{tmp_path}/t.db", check=False)
    assert result.returncode == 1
    assert "k8s-sql-migrate import: the dump ends before its trailer: it is truncated" in result.stderr


@pytest.mark.parametrize(
    "arguments, message",
    [
        ([], "name a command"),
        (["copy", "--from", "sqlite:///a.db"], "--to is required"),
        (["copy", "--from", "sqlite:///a.db", "--to", "sqlite:///a.db"], "name the same database"),
        (["copy", "--from", "oracle://x/y", "--to", "sqlite:///a.db"], "unsupported database URL"),
        (["import", "--file", "-", "--to", "sqlite:///a.db", "--verify"], "needs a file, not standard input"),
        (["export", "--from", "sqlite:///a.db", "--file", "x", "--timeout", "0"], "not greater than zero"),
    ],
)
def test_bad_command_lines_exit_2(arguments: list[str], message: str) -> None:
    result = migrate(*arguments, check=False)
    assert result.returncode == 2
    assert message in result.stderr
