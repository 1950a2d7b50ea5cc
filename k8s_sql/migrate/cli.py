"""The ``k8s-sql-migrate`` command: copy, export, import and verify snapshots.

    k8s-sql-migrate copy   --from SOURCE --to DATABASE [--force] [--verify]
    k8s-sql-migrate export --from SOURCE --file PATH [--force]
    k8s-sql-migrate import --file PATH --to DATABASE [--force] [--verify] [--skip-hash-check]
    k8s-sql-migrate verify --from SOURCE --to DATABASE [--revision N]

A SOURCE is an etcd endpoint (``http://host:port``, ``https://host:port``) or a database
URL; a DATABASE is a database URL (``sqlite:///…``, ``mysql://…``, ``postgres://…``).  An
import reads a k8s-sql dump or an etcd snapshot file (``etcdctl snapshot save``'s), told
apart by their first bytes.
Progress and results go to standard error; the exit status is 0 on success, 1 when the
command failed or verification found differences, 2 for a bad command line.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from twisted.internet.task import react
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.python import usage

from k8s_sql import __version__
from k8s_sql.durations import positive_duration
from k8s_sql.grpc.client import channel_for
from k8s_sql.grpc.status import GRPCError
from k8s_sql.migrate.database import StoreSink, StoreSource
from k8s_sql.migrate.dumpfile import STANDARD_STREAM, DumpReader, DumpWriter, is_dump
from k8s_sql.migrate.dumpformat import DumpError
from k8s_sql.migrate.etcd import EtcdSource
from k8s_sql.migrate.interfaces import ISnapshotSource
from k8s_sql.migrate.progress import Progress
from k8s_sql.migrate.snapfile import SnapshotFileSource
from k8s_sql.migrate.transfer import copy_snapshot
from k8s_sql.migrate.verify import Report, verify
from k8s_sql.snapshot.bbolt import SnapshotError
from k8s_sql.store import open_store
from k8s_sql.store.errors import Compacted, FutureRevision, NotEmpty, StoreError
from k8s_sql.store.url import DatabaseURL, redact

ETCD_SCHEMES = ("http://", "https://")


def is_etcd(spec: str) -> bool:
    """Whether a SOURCE names an etcd endpoint rather than a database."""
    return spec.startswith(ETCD_SCHEMES)


def database_url(spec: str) -> str:
    """``spec`` if it is a valid database URL; ``UsageError`` otherwise."""
    try:
        DatabaseURL.parse(spec)
    except ValueError as e:
        raise usage.UsageError(str(e)) from None
    return spec


def _print_version(options: usage.Options) -> None:
    """Print the version and exit."""
    print(f"k8s-sql-migrate {__version__}")
    sys.exit(0)


class _Command(usage.Options):
    """Options every command takes: how to reach etcd, how to report progress."""

    opt_version = _print_version

    optParameters: list[list[Any]] = [
        ["etcd-cacert", None, None, "CA certificates (PEM) to verify an https:// etcd with [default: the system's]."],
        ["etcd-cert", None, None, "Client certificate (PEM) to present to etcd."],
        ["etcd-key", None, None, "The client certificate's private key (PEM)."],
        ["etcd-user", None, None, "NAME:PASSWORD for an etcd with authentication enabled."],
        ["timeout", None, 60.0, "How long each etcd call may take (seconds, or e.g. 90s, 2m).", positive_duration],
        ["progress-interval", None, 2.0, "Time between progress reports (seconds, or e.g. 500ms).", positive_duration],
    ]
    optFlags = [["quiet", "q", "Report results only, not progress."]]

    def need(self, *names: str) -> None:
        """Refuse a command line without the options ``names``."""
        for name in names:
            if not self[name]:
                raise usage.UsageError(f"--{name} is required")


class CopyOptions(_Command):
    """``copy``: from etcd or a database into another database."""

    synopsis = "--from SOURCE --to DATABASE [--force] [--verify]"
    longdesc = (
        "Copy every key of SOURCE (an etcd endpoint, http:// or https://, or a database URL) at one "
        "revision, with its leases, into the empty database DATABASE, keeping revisions and versions."
    )
    optParameters: list[list[Any]] = [
        ["from", None, None, "The etcd endpoint or database URL to copy from."],
        ["to", None, None, "The database URL to copy into; it must hold no keys or leases."],
    ]
    optFlags: list[list[Any]] = [
        ["force", None, "Replace whatever the target database holds."],
        ["verify", None, "Afterwards, compare the target with the source key by key."],
    ]

    def postOptions(self) -> None:
        """Check the endpoints."""
        self.need("from", "to")
        if not is_etcd(self["from"]):
            database_url(self["from"])
        database_url(self["to"])
        if self["from"] == self["to"]:
            raise usage.UsageError("--from and --to name the same database")


class ExportOptions(_Command):
    """``export``: from etcd or a database into a dump file."""

    synopsis = "--from SOURCE --file PATH [--force]"
    longdesc = "Write every key of SOURCE at one revision, with its leases, to a dump file."
    optParameters: list[list[Any]] = [
        ["from", None, None, "The etcd endpoint or database URL to export."],
        ["file", None, None, "The dump file to write ('-': standard output; gzip-compressed if it ends in .gz)."],
    ]
    optFlags: list[list[Any]] = [["force", None, "Replace the file if it exists."]]

    def postOptions(self) -> None:
        """Check the endpoints."""
        self.need("from", "file")
        if not is_etcd(self["from"]):
            database_url(self["from"])


class ImportOptions(_Command):
    """``import``: from a dump file or an etcd snapshot file into a database."""

    synopsis = "--file PATH --to DATABASE [--force] [--verify] [--skip-hash-check]"
    longdesc = (
        "Load a dump file, or an etcd snapshot file (etcdctl snapshot save), into the empty database "
        "DATABASE, keeping revisions and versions."
    )
    optParameters: list[list[Any]] = [
        ["file", None, None, "The dump file ('-': standard input) or etcd snapshot file to read."],
        ["to", None, None, "The database URL to import into; it must hold no keys or leases."],
    ]
    optFlags: list[list[Any]] = [
        ["force", None, "Replace whatever the target database holds."],
        ["verify", None, "Afterwards, compare the database with the file key by key."],
        ["skip-hash-check", None, "Accept an etcd db file without sha256 trailer (copied from a data directory)."],
    ]

    def postOptions(self) -> None:
        """Check the endpoints."""
        self.need("file", "to")
        database_url(self["to"])
        if self["verify"] and self["file"] == STANDARD_STREAM:
            raise usage.UsageError("--verify reads the dump again: it needs a file, not standard input")


class VerifyOptions(_Command):
    """``verify``: compare a database with etcd or another database."""

    synopsis = "--from SOURCE --to DATABASE [--revision N]"
    longdesc = "Compare DATABASE with SOURCE at one revision, key by key; exit 1 on any difference."
    optParameters: list[list[Any]] = [
        ["from", None, None, "The etcd endpoint or database URL holding the expected keys."],
        ["to", None, None, "The database URL to check."],
        ["revision", None, 0, "The source's revision to compare with [default: its current one].", int],
    ]

    def postOptions(self) -> None:
        """Check the endpoints."""
        self.need("from", "to")
        if not is_etcd(self["from"]):
            database_url(self["from"])
        database_url(self["to"])


class Options(usage.Options):
    """``k8s-sql-migrate``: move keys into and out of k8s-sql."""

    synopsis = "Usage: k8s-sql-migrate"
    longdesc = (
        "Copy every key of a running etcd or of a k8s-sql database into a k8s-sql database, or "
        "through a dump file, keeping values, revisions and leases.  See docs/migration.md."
    )
    subCommands = [
        ["copy", None, CopyOptions, "Copy etcd or a database into a database."],
        ["export", None, ExportOptions, "Write etcd or a database to a dump file."],
        ["import", None, ImportOptions, "Load a dump file into a database."],
        ["verify", None, VerifyOptions, "Compare a database with etcd or another database, key by key."],
    ]

    opt_version = _print_version

    def postOptions(self) -> None:
        """A command is required."""
        if self.subCommand is None:
            raise usage.UsageError("name a command: copy, export, import or verify")


class Migration:
    """Runs one command on ``reactor``, writing progress and results to ``stream``."""

    def __init__(self, reactor: Any, options: _Command, stream: TextIO) -> None:
        self.reactor = reactor
        self.options = options
        self.stream = stream
        self.resources = contextlib.AsyncExitStack()

    def progress(self, verb: str) -> Progress:
        """A progress reporter for one pass over the keys."""
        interval = None if self.options["quiet"] else self.options["progress-interval"]
        return Progress(self.reactor, self.stream, interval=interval, verb=verb)

    def say(self, text: str) -> None:
        """Tell the user something."""
        print(text, file=self.stream, flush=True)

    async def source(self, spec: str) -> ISnapshotSource:
        """The snapshot source ``spec`` names: an etcd endpoint or a database URL."""
        if is_etcd(spec):
            options = self.options
            channel = channel_for(
                self.reactor,
                spec,
                ca_file=options["etcd-cacert"],
                cert_file=options["etcd-cert"],
                key_file=options["etcd-key"],
            )
            self.resources.push_async_callback(channel.close)
            user, _, password = (options["etcd-user"] or "").partition(":")
            return EtcdSource(channel, self.reactor, user=user or None, password=password, timeout=options["timeout"])
        return StoreSource(await self.store(spec), self.reactor, f"database {redact(spec)}")

    async def store(self, url: str) -> Any:
        """The store at ``url``, closed when the command ends."""
        store = await open_store(url, self.reactor)
        self.resources.push_async_callback(store.close)
        return store

    def report(self, report: Report, target: str) -> None:
        """Tell the outcome of a verification; exit 1 when it found differences."""
        if report.ok:
            self.say(f"verified: {target} holds the source's {report.keys} keys at revision {report.source_revision}")
            return
        for problem in report.problems:
            self.say(f"  {problem}")
        more = report.count - len(report.problems)
        self.say(f"verification failed: {report.count} differences" + (f" ({more} not shown)" if more else ""))
        raise SystemExit(1)


async def copy_command(migration: Migration) -> None:
    """``copy``: source → database, then verify if asked."""
    options = migration.options
    source = await migration.source(options["from"])
    store = await migration.store(options["to"])
    if isinstance(source, StoreSource) and source.store.cluster_id == store.cluster_id:
        raise ValueError(f"--from and --to name the same database (cluster ID {store.cluster_id})")
    sink = StoreSink(store, migration.reactor, replace=options["force"])
    header = await copy_snapshot(source, sink, migration.progress("copied"))
    target = redact(options["to"])
    migration.say(
        f"copied {source.description} at revision {header.revision} into {target}, now at revision {sink.revision}"
    )
    if options["verify"]:
        target_source = StoreSource(store, migration.reactor, f"database {target}")
        migration.report(await verify(source, target_source, migration.progress("verified"), header.revision), target)


async def export_command(migration: Migration) -> None:
    """``export``: source → dump file."""
    options = migration.options
    source = await migration.source(options["from"])
    writer = DumpWriter(options["file"], migration.reactor, replace=options["force"])
    try:
        header = await copy_snapshot(source, writer, migration.progress("exported"))
    except BaseException:
        await writer.discard()
        raise
    migration.say(f"exported {source.description} at revision {header.revision} to {options['file']}")


async def import_command(migration: Migration) -> None:
    """``import``: dump or etcd snapshot file → database, then verify if asked.

    A snapshot file is read and checked whole before the database is opened, so a
    damaged one leaves the database untouched.
    """
    options = migration.options
    path = options["file"]
    reader: DumpReader | SnapshotFileSource
    if path == STANDARD_STREAM or is_dump(path):
        reader = DumpReader(path, migration.reactor)
        migration.resources.push_async_callback(reader.close)
    else:
        reader = SnapshotFileSource(path, migration.reactor, skip_hash_check=options["skip-hash-check"])
        migration.resources.push_async_callback(reader.close)
        await reader.open()
    store = await migration.store(options["to"])
    sink = StoreSink(store, migration.reactor, replace=options["force"])
    header = await copy_snapshot(reader, sink, migration.progress("imported"))
    target = redact(options["to"])
    migration.say(
        f"imported {options['file']} ({header.source} at revision {header.revision}) into {target}, "
        f"now at revision {sink.revision}"
    )
    if options["verify"]:
        target_source = StoreSource(store, migration.reactor, f"database {target}")
        migration.report(await verify(reader, target_source, migration.progress("verified"), header.revision), target)


async def verify_command(migration: Migration) -> None:
    """``verify``: source against database."""
    options = migration.options
    source = await migration.source(options["from"])
    target = redact(options["to"])
    target_source = StoreSource(await migration.store(options["to"]), migration.reactor, f"database {target}")
    migration.report(await verify(source, target_source, migration.progress("verified"), options["revision"]), target)


COMMANDS = {"copy": copy_command, "export": export_command, "import": import_command, "verify": verify_command}


def explain(error: BaseException) -> str:
    """What went wrong, in words for the command line."""
    if isinstance(error, NotEmpty):
        return "the target database holds keys or leases: use --force to replace them"
    if isinstance(error, Compacted):
        return f"the source's revision is compacted (compaction at {error.compact_revision}): copy again"
    if isinstance(error, FutureRevision):
        return "the source has no such revision yet"
    if isinstance(error, GRPCError):
        return f"etcd answered {error.code.name}: {error.message}"
    return str(error) or type(error).__name__


async def run(reactor: Any, options: Options, stream: TextIO) -> None:
    """Run the command ``options`` name; ``SystemExit(1)`` after telling what failed."""
    migration = Migration(reactor, options.subOptions, stream)
    try:
        async with migration.resources:
            assert options.subCommand is not None  # usage.Options requires one
            await COMMANDS[options.subCommand](migration)
    except (StoreError, GRPCError, DumpError, SnapshotError, OSError, ValueError) as error:
        migration.say(f"k8s-sql-migrate {options.subCommand}: {explain(error)}")
        raise SystemExit(1) from None


def main(argv: Sequence[str] | None = None) -> None:
    """The ``k8s-sql-migrate`` console script."""
    options = Options()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else list(argv))
    except usage.UsageError as error:
        print(f"k8s-sql-migrate: {error}", file=sys.stderr)
        print("Try k8s-sql-migrate --help (or COMMAND --help) for usage details.", file=sys.stderr)
        sys.exit(2)
    warnings = FilteringLogObserver(textFileLogObserver(sys.stderr), [LogLevelFilterPredicate(LogLevel.warn)])
    globalLogBeginner.beginLoggingTo([warnings], redirectStandardIO=False)
    react(run, (options, sys.stderr))
