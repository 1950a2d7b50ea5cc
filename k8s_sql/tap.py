"""The command line: ``twistd -n k8s-sql [options]`` and the ``k8s-sql`` console script.

Both take the same options (``Options``; ``docs/configuration.md`` describes each) and
check them all before anything listens: a bad option ends the command with one line on
stderr and a non-zero status.  In the foreground, logs go to stdout (``--log-format``,
``--log-level``); SIGTERM and SIGINT stop the server cleanly, with status 0.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import _ISupportsExitSignalCapturing
from twisted.internet.task import react
from twisted.logger import ILogObserver, globalLogBeginner
from twisted.python import usage
from twisted.python.components import Componentized
from twisted.python.failure import Failure

from k8s_sql import __version__
from k8s_sql.durations import format_duration, parse_duration, positive_duration
from k8s_sql.etcd.kv import DEFAULT_MAX_REQUEST_BYTES
from k8s_sql.etcd.lease import DEFAULT_MIN_TTL
from k8s_sql.etcd.watch import DEFAULT_PROGRESS_INTERVAL
from k8s_sql.grpc.protocol import KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT
from k8s_sql.housekeeping.compactor import MODES as COMPACTION_MODES
from k8s_sql.housekeeping.sweeper import DEFAULT_INTERVAL as DEFAULT_SWEEP_INTERVAL
from k8s_sql.logs import LOG_FORMATS, LOG_LEVELS, log_observer
from k8s_sql.service import (
    DEFAULT_ENDPOINT,
    DEFAULT_ETCD_VERSION,
    DEFAULT_LISTEN,
    ConfigurationError,
    K8sSQLService,
    ServerConfig,
    plan_server,
)
from k8s_sql.store.checks import DEFAULT_MAX_TXN_OPS
from k8s_sql.store.compaction import DEFAULT_BATCH as DEFAULT_COMPACTION_BATCH
from k8s_sql.store.signals import DEFAULT_POLL_INTERVAL


def seconds_or_zero(text: str) -> float:
    """A duration (``1.5``, ``500ms``, ``2m``) in seconds; 0 is allowed."""
    return parse_duration(text)


def positive_int(text: str) -> int:
    """A whole number greater than zero."""
    if not text.strip().isdigit() or int(text) <= 0:
        raise ValueError(f"{text!r} is not a whole number greater than zero")
    return int(text)


def one_of(choices: Sequence[str]) -> Callable[[str], str]:
    """A converter accepting only ``choices``."""

    def choose(text: str) -> str:
        if text not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return text

    return choose


class Options(usage.Options):
    """Options of ``twistd k8s-sql`` and of the ``k8s-sql`` command.

    @param reactor: the reactor endpoint descriptions are checked with (default: the global one).
    """

    synopsis = "Usage: k8s-sql [options]  (or: twistd -n k8s-sql [options])"
    longdesc = (
        "Serve the etcd v3 API (as kube-apiserver, etcdctl and etcd clients use it) "
        "from a SQL database: SQLite, MySQL/MariaDB or PostgreSQL.  Durations are seconds "
        "or Go-style durations (500ms, 30s, 5m, 1h).  See docs/configuration.md."
    )

    optFlags = [
        [
            "client-cert-auth",
            None,
            "Refuse clients without a certificate signed by --trusted-ca-file, as etcd's --client-cert-auth.",
        ],
    ]

    optParameters = [
        [
            "endpoint",
            None,
            DEFAULT_ENDPOINT,
            "Database URL: sqlite:///relative/path, sqlite:////absolute/path, "
            "mysql://user:password@host:port/database or postgres://user:password@host:port/database, "
            "with ?option=value tuning (docs/backends.md).",
        ],
        ["name", None, "default", "This member's name, as etcd's --name; the member ID is derived from it."],
        [
            "cert-file",
            None,
            None,
            "TLS on every --listen endpoint: the server certificate (PEM, intermediates after it), "
            "as etcd's --cert-file.",
        ],
        ["key-file", None, None, "The server certificate's private key (PEM, unencrypted), as etcd's --key-file."],
        [
            "trusted-ca-file",
            None,
            None,
            "CA certificates (PEM) that client certificates are verified against, as etcd's --trusted-ca-file.",
        ],
        [
            "emulated-etcd-version",
            None,
            DEFAULT_ETCD_VERSION,
            "The etcd version reported to clients; kube-apiserver enables features by it.",
        ],
        ["auto-compaction-mode", None, "periodic", "periodic or revision, as etcd's --auto-compaction-mode."],
        [
            "auto-compaction-retention",
            None,
            "0",
            "As etcd's --auto-compaction-retention: periodic: history to keep, a duration (30m, 1h) "
            "or a whole number of hours; revision: revisions to keep; 0 turns auto-compaction off.",
        ],
        [
            "compaction-batch",
            None,
            str(DEFAULT_COMPACTION_BATCH),
            "Revisions of the log each short physical compaction transaction examines.",
        ],
        [
            "max-txn-ops",
            None,
            str(DEFAULT_MAX_TXN_OPS),
            "The most operations in one branch of a transaction, as etcd's --max-txn-ops.",
        ],
        [
            "max-request-bytes",
            None,
            str(DEFAULT_MAX_REQUEST_BYTES),
            "The largest write request accepted, as etcd's --max-request-bytes.",
        ],
        [
            "poll-interval",
            None,
            format_duration(DEFAULT_POLL_INTERVAL),
            "How often to look for writes made by other servers sharing the database; 0: never "
            "(one server alone, or PostgreSQL, whose LISTEN/NOTIFY pushes them).",
        ],
        [
            "progress-notify-interval",
            None,
            format_duration(DEFAULT_PROGRESS_INTERVAL),
            "How often watches that asked for progress notifications get one, as etcd's "
            "--experimental-watch-progress-notify-interval.",
        ],
        ["lease-min-ttl", None, str(DEFAULT_MIN_TTL), "The shortest lease TTL granted, in seconds."],
        [
            "lease-sweep-interval",
            None,
            format_duration(DEFAULT_SWEEP_INTERVAL),
            "How often expired leases are revoked.",
        ],
        ["slow-sql-threshold", None, "1s", "Log database transactions that take at least this long; 0: never."],
        ["shutdown-grace", None, "5s", "How long calls in flight may take to finish when the server stops."],
        [
            "grpc-keepalive-interval",
            None,
            format_duration(KEEPALIVE_INTERVAL),
            "PING a client not heard from for this long, as etcd's --grpc-keepalive-interval; 0: never.",
        ],
        [
            "grpc-keepalive-timeout",
            None,
            format_duration(KEEPALIVE_TIMEOUT),
            "Close the connection of a PINGed client that stays silent this long, as etcd's --grpc-keepalive-timeout.",
        ],
        ["log-format", None, "text", f"Log lines as {' or '.join(LOG_FORMATS)}."],
        ["log-level", None, "info", f"The least severe log level written: {', '.join(LOG_LEVELS)}."],
    ]

    #: How each parameter's text becomes its value; the others stay text.
    conversions: dict[str, Callable[[str], Any]] = {
        "auto-compaction-mode": one_of(COMPACTION_MODES),
        "compaction-batch": positive_int,
        "max-txn-ops": positive_int,
        "max-request-bytes": positive_int,
        "poll-interval": seconds_or_zero,
        "progress-notify-interval": positive_duration,
        "lease-min-ttl": positive_int,
        "lease-sweep-interval": positive_duration,
        "slow-sql-threshold": seconds_or_zero,
        "shutdown-grace": positive_duration,
        "grpc-keepalive-interval": seconds_or_zero,
        "grpc-keepalive-timeout": positive_duration,
        "log-format": one_of(LOG_FORMATS),
        "log-level": one_of(LOG_LEVELS),
    }

    def __init__(self, reactor: Any = None) -> None:
        super().__init__()
        self._reactor = reactor
        self["listen"] = []
        self["metrics-listen"] = []
        self["advertise-client-urls"] = []

    def opt_listen(self, description: str) -> None:
        """Serve the etcd API on this Twisted endpoint description; repeatable.
        [default: tcp:2379:interface=127.0.0.1]"""
        self["listen"].append(description)

    def opt_metrics_listen(self, description: str) -> None:
        """Serve /metrics, /health, /readyz and /livez on this endpoint description; repeatable. [default: none]"""
        self["metrics-listen"].append(description)

    def opt_advertise_client_urls(self, urls: str) -> None:
        """Client URLs to advertise, comma-separated, as etcd's; repeatable. [default: the --listen ports' URLs]"""
        self["advertise-client-urls"].extend(url.strip() for url in urls.split(",") if url.strip())

    def opt_version(self) -> None:
        """Print the version and exit."""
        print(f"k8s-sql {__version__}")
        sys.exit(0)

    def postOptions(self) -> None:
        """Convert the parameters and check the whole configuration; ``UsageError`` names what is wrong."""
        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]
        for name, convert in self.conversions.items():
            try:
                self[name] = convert(str(self[name]))
            except ValueError as error:
                raise usage.UsageError(f"--{name}: {error}") from None
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor
        try:
            plan_server(self.config(), reactor)
        except ConfigurationError as error:
            raise usage.UsageError(str(error)) from None

    def config(self) -> ServerConfig:
        """The server configuration these options describe."""
        return ServerConfig(
            listen=list(self["listen"]),
            endpoint=self["endpoint"],
            name=self["name"],
            cert_file=self["cert-file"],
            key_file=self["key-file"],
            trusted_ca_file=self["trusted-ca-file"],
            client_cert_auth=bool(self["client-cert-auth"]),
            metrics_listen=list(self["metrics-listen"]),
            advertise_client_urls=list(self["advertise-client-urls"]),
            emulated_etcd_version=self["emulated-etcd-version"],
            auto_compaction_mode=self["auto-compaction-mode"],
            auto_compaction_retention=self["auto-compaction-retention"],
            compaction_batch=self["compaction-batch"],
            max_txn_ops=self["max-txn-ops"],
            max_request_bytes=self["max-request-bytes"],
            poll_interval=self["poll-interval"],
            progress_notify_interval=self["progress-notify-interval"],
            lease_min_ttl=self["lease-min-ttl"],
            lease_sweep_interval=self["lease-sweep-interval"],
            slow_sql_threshold=self["slow-sql-threshold"],
            shutdown_grace=self["shutdown-grace"],
            grpc_keepalive_interval=self["grpc-keepalive-interval"],
            grpc_keepalive_timeout=self["grpc-keepalive-timeout"],
        )


class TwistdService(MultiService):
    """What ``twistd k8s-sql`` runs: the server, and what twistd must be told.

    Attached to twistd's application, it sets the application's log observer (twistd
    uses it instead of its own) when twistd logs to stdout in the foreground.  After a
    clean stop, twistd exits with status 0 rather than re-raising the signal that stopped
    it, as the console script does.  A server that cannot start stops the reactor, and
    twistd, which has no exit status of its own to report, ends by SIGTERM (status 143
    in a shell) once it has cleaned up: a non-zero status supervisors see as a failure.

    @param server: the server to run.
    @param reactor: the reactor twistd runs.
    @param observer: the log observer for twistd's application, or ``None`` to leave twistd's.
    """

    def __init__(self, server: K8sSQLService, reactor: Any, observer: ILogObserver | None) -> None:
        super().__init__()
        self.server = server
        self.reactor = reactor
        self.observer = observer
        #: Whether the server failed to start (rather than being stopped while starting).
        self.start_failed = False
        server.setServiceParent(self)

    def setServiceParent(self, parent: Any) -> None:
        """Join ``parent``; give twistd's application the log observer."""
        super().setServiceParent(parent)
        if self.observer is not None and isinstance(parent, Componentized):
            parent.setComponent(ILogObserver, self.observer)

    def startService(self) -> None:
        """Start the server; stop the reactor if it cannot start."""
        super().startService()
        self.server.whenReady().addErrback(self._failed)

    def _failed(self, failure: Failure) -> None:
        # The server has logged why.  If it failed because it is being stopped, so is the reactor.
        if self.running:
            self.start_failed = True
            self.reactor.stop()

    def stopService(self) -> Deferred[None]:
        """Stop the server; once it stopped cleanly, the process exits with status 0."""
        stopped = super().stopService()
        stopped.addCallback(self._stopped)
        return stopped

    def _stopped(self, result: object) -> None:
        if _ISupportsExitSignalCapturing.providedBy(self.reactor):
            self.reactor._exitSignal = signal.SIGTERM if self.start_failed else None


def makeService(options: Options, reactor: Any = None) -> IService:
    """The service ``twistd k8s-sql`` runs (``IServiceMaker.makeService``)."""
    if reactor is None:
        from twisted.internet import reactor
    twistd = getattr(options, "parent", None)
    foreground_stdout = (
        twistd is not None
        and twistd.get("nodaemon")
        and not any(twistd.get(name) for name in ("logfile", "logger", "syslog"))
    )
    observer = log_observer(options["log-format"], options["log-level"], sys.stdout) if foreground_stdout else None
    return TwistdService(K8sSQLService(options.config(), reactor), reactor, observer)


def main(argv: Sequence[str] | None = None) -> None:
    """The ``k8s-sql`` console script: run in the foreground, log to stdout, stop on SIGTERM."""
    options = Options()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else list(argv))
    except usage.UsageError as error:
        print(f"k8s-sql: {error} (see k8s-sql --help)", file=sys.stderr)
        sys.exit(2)
    observer = log_observer(options["log-format"], options["log-level"], sys.stdout)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    react(_serve, (options,))


async def _serve(reactor: Any, options: Options) -> None:
    service = K8sSQLService(options.config(), reactor)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    service.startService()
    try:
        await service.whenReady()
    except CancelledError:
        return  # stopped (SIGTERM, SIGINT) while starting
    except Exception:
        raise SystemExit(1) from None  # the service has logged why
    await Deferred()  # serve until SIGTERM or SIGINT stops the reactor
