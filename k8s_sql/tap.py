"""The command line: ``twistd -n k8s-sql [options]`` and the ``k8s-sql`` console script."""

from __future__ import annotations

import sys
from typing import Any, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.python import usage

from k8s_sql import __version__
from k8s_sql.service import DEFAULT_ENDPOINT, DEFAULT_LISTEN, K8sSQLService, ServerConfig

log = Logger()


def positive_float(text: str) -> float:
    """A number of seconds greater than zero."""
    value = float(text)
    if value <= 0:
        raise ValueError(f"{text!r} is not greater than zero")
    return value


def positive_int(text: str) -> int:
    """A whole number greater than zero."""
    value = int(text)
    if value <= 0:
        raise ValueError(f"{text!r} is not greater than zero")
    return value


class Options(usage.Options):
    """Options of ``twistd k8s-sql`` and of the ``k8s-sql`` command."""

    synopsis = "[options]"
    longdesc = (
        "Serve the etcd v3 API (as kube-apiserver, etcdctl and etcd clients use it) "
        "from a SQL database: SQLite, MySQL/MariaDB or PostgreSQL."
    )

    optParameters = [
        [
            "endpoint",
            None,
            DEFAULT_ENDPOINT,
            "Database URL: sqlite:///relative/path, sqlite:////absolute/path, "
            "mysql://user:password@host:port/database or postgres://user:password@host:port/database.",
        ],
        ["name", None, "default", "This member's name, as etcd's --name."],
        [
            "poll-interval",
            None,
            1.0,
            "Seconds between polls for writes made by other servers sharing the database.",
            positive_float,
        ],
        [
            "progress-notify-interval",
            None,
            600.0,
            "Seconds between progress notifications to watches that asked for them.",
            positive_float,
        ],
        ["lease-min-ttl", None, 2, "The shortest lease TTL granted, in seconds.", positive_int],
        [
            "lease-sweep-interval",
            None,
            0.5,
            "Seconds between sweeps that revoke expired leases.",
            positive_float,
        ],
        [
            "max-request-bytes",
            None,
            1536 * 1024,
            "The largest write request accepted, as etcd's --max-request-bytes.",
            positive_int,
        ],
        [
            "shutdown-grace",
            None,
            5.0,
            "Seconds calls in flight may take to finish when the server stops.",
            positive_float,
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, description: str) -> None:
        """A Twisted server endpoint description to serve the etcd API on; repeatable.
        [default: tcp:2379:interface=127.0.0.1]"""
        self["listen"].append(description)

    def opt_version(self) -> None:
        """Print the version and exit."""
        print(f"k8s-sql {__version__}")
        sys.exit(0)

    def postOptions(self) -> None:
        """Fill in defaults that depend on other options."""
        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]

    def config(self) -> ServerConfig:
        """The server configuration these options describe."""
        return ServerConfig(
            listen=list(self["listen"]),
            endpoint=self["endpoint"],
            name=self["name"],
            poll_interval=self["poll-interval"],
            progress_notify_interval=self["progress-notify-interval"],
            lease_min_ttl=self["lease-min-ttl"],
            lease_sweep_interval=self["lease-sweep-interval"],
            max_request_bytes=self["max-request-bytes"],
            shutdown_grace=self["shutdown-grace"],
        )


def makeService(options: Options, reactor: Any = None) -> K8sSQLService:
    """The server ``options`` describe; under twistd a failed start stops the reactor."""
    if reactor is None:
        from twisted.internet import reactor
    service = K8sSQLService(options.config(), reactor)
    service.whenReady().addErrback(lambda _: reactor.stop())
    return service


def main(argv: Sequence[str] | None = None) -> None:
    """The ``k8s-sql`` console script: run in the foreground, log to stdout, stop on SIGTERM."""
    options = Options()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else list(argv))
    except usage.UsageError as error:
        print(f"k8s-sql: {error}", file=sys.stderr)
        print(f"{sys.argv[0]}: Try --help for usage details.", file=sys.stderr)
        sys.exit(2)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)], redirectStandardIO=False)
    react(_serve, (options,))


async def _serve(reactor: Any, options: Options) -> None:
    service = K8sSQLService(options.config(), reactor)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    service.startService()
    try:
        await service.whenReady()
    except Exception:
        raise SystemExit(1)
    await Deferred()  # serve until SIGTERM or SIGINT stops the reactor
