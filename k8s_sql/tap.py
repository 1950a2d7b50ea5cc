"""The command line: ``twistd -n k8s-sql [options]`` and the ``k8s-sql`` console script.

Both take the same options, derived from the fields of ``ServerConfig`` and
``ProcessConfig`` (``k8s_sql.options``; docs/configuration.md describes each), and check
them all before anything listens: a bad option ends the command with one line on stderr and
a non-zero status.  In the foreground, logs go to stdout (``--log-format``,
``--log-level``); SIGTERM and SIGINT stop the server cleanly, with status 0.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import react
from twisted.logger import ILogObserver, Logger, globalLogBeginner
from twisted.python import usage
from twisted.python.components import Componentized
from twisted.python.failure import Failure

from k8s_sql import __version__
from k8s_sql.config import ConfigurationError, ProcessConfig, ServerConfig
from k8s_sql.logs import log_observer
from k8s_sql.options import Option, markdown_table, options_of
from k8s_sql.service import K8sSQLService
from k8s_sql.workers.supervisor import WorkerSupervisor

#: What the command runs: a server, or the supervisor of its worker processes.
Server = K8sSQLService | WorkerSupervisor

#: Every option, in the order ``--help`` and the docs list them.
OPTIONS = list(options_of(ServerConfig, ProcessConfig))
#: The signals that stop the server.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _repeatable(opt: Option) -> Callable[[usage.Options, str], None]:
    """The ``opt_`` method of a repeatable option: each use adds its value(s)."""

    def add(self: usage.Options, text: str) -> None:
        values = [part.strip() for part in text.split(",") if part.strip()] if opt.spec.split else [text]
        self[opt.name].extend(values)

    shown = opt.default_shown or opt.spec.default_text.replace("`", "") or "none"
    add.__doc__ = f"{opt.spec.help} [default: {shown}]"
    return add


class Options(usage.Options):
    """Options of ``twistd k8s-sql`` and of the ``k8s-sql`` command.

    Parsing them checks the whole configuration and builds the server (``service``),
    which touches neither the network nor the database until it starts.

    @param reactor: the reactor the server runs on (default: the global one).
    """

    synopsis = "Usage: k8s-sql [options]  (or: twistd -n k8s-sql [options])"
    longdesc = (
        "Serve the etcd v3 API (as kube-apiserver, etcdctl and etcd clients use it) "
        "from a SQL database: SQLite, MySQL/MariaDB or PostgreSQL.  Durations are seconds "
        "or Go-style durations (500ms, 30s, 5m, 1h).  See docs/configuration.md."
    )

    optFlags = [[opt.name, None, opt.spec.help] for opt in OPTIONS if opt.spec.flag]
    optParameters = [
        [opt.name, None, opt.default_shown, opt.spec.help] for opt in OPTIONS if not (opt.spec.flag or opt.spec.repeat)
    ]

    def __init__(self, reactor: Any = None) -> None:
        super().__init__()
        self._reactor = reactor
        for opt in OPTIONS:
            if opt.spec.repeat:
                self[opt.name] = []
        #: The command line parsed (worker processes are given the same).
        self.argv: list[str] = []
        #: The server these options describe, once parsed.
        self.service: Server | None = None

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """Parse ``options`` (default: the process's arguments)."""
        self.argv = list(sys.argv[1:] if options is None else options)
        super().parseOptions(self.argv)

    def opt_version(self) -> None:
        """Print the version and exit."""
        print(f"k8s-sql {__version__}")
        sys.exit(0)

    def postOptions(self) -> None:
        """Read every option's value, then check the configuration by building the server;
        ``UsageError`` names what is wrong."""
        for opt in OPTIONS:
            if opt.spec.repeat:
                self[opt.name] = list(self[opt.name]) or list(opt.default)
            elif opt.spec.flag:
                self[opt.name] = bool(self[opt.name])
            elif self[opt.name] is not None:
                try:
                    self[opt.name] = opt.read(str(self[opt.name]))
                except ValueError as error:
                    raise usage.UsageError(f"--{opt.name}: {error}") from None
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor
        try:
            self.service = self.make_service(self.config(), self.process(), reactor)
        except ConfigurationError as error:
            raise usage.UsageError(str(error)) from None

    def make_service(self, config: ServerConfig, process: ProcessConfig, reactor: Any) -> Server:
        """The server these options describe: one process, or a supervisor of several."""
        if process.workers == 1:
            return K8sSQLService(config, reactor)
        return WorkerSupervisor(config, process, self.argv, reactor, process.workers)

    def config(self) -> ServerConfig:
        """The server configuration these options describe."""
        return self._fill(ServerConfig)

    def process(self) -> ProcessConfig:
        """What the process itself is told: how to log."""
        return self._fill(ProcessConfig)

    def _fill(self, config: type[Any]) -> Any:
        return config(**{field.name: self[field.name.replace("_", "-")] for field in dataclasses.fields(config)})

    @classmethod
    def markdown(cls) -> str:
        """The option table of docs/configuration.md."""
        return markdown_table(
            OPTIONS, [("version", cls.opt_version.__doc__ or ""), ("help", "Print the options and exit.")]
        )


for _opt in OPTIONS:
    if _opt.spec.repeat:
        setattr(Options, "opt_" + _opt.name.replace("-", "_"), _repeatable(_opt))


class TwistdService(MultiService):
    """What ``twistd k8s-sql`` runs: the server, and what twistd must be told.

    Attached to twistd's application, it sets the application's log observer (twistd
    uses it instead of its own) when twistd logs to stdout in the foreground.  Once the
    reactor runs it takes SIGTERM and SIGINT over from Twisted's handlers and stops the
    reactor itself, so that twistd, which re-raises a signal Twisted's handlers caught,
    exits with status 0 after a clean stop, as the console script does.  A server that
    cannot start stops the process as twistd stops for a signal: the signal is handed back
    to Twisted's handler and sent, so twistd cleans up and then ends by SIGTERM (status 143
    in a shell), a failure supervisors see.

    @param server: the server to run.
    @param reactor: the reactor twistd runs.
    @param observer: the log observer for twistd's application, or ``None`` to leave twistd's.
    """

    log = Logger()

    def __init__(self, server: Server, reactor: Any, observer: ILogObserver | None) -> None:
        super().__init__()
        self.server = server
        self.reactor = reactor
        self.observer = observer
        self._twisted_handlers: dict[int, Any] = {}
        server.setServiceParent(self)

    def setServiceParent(self, parent: Any) -> None:
        """Join ``parent``; give twistd's application the log observer."""
        super().setServiceParent(parent)
        if self.observer is not None and isinstance(parent, Componentized):
            parent.setComponent(ILogObserver, self.observer)

    def startService(self) -> None:
        """Take the stop signals as soon as the reactor runs, before anything the server
        starts then (its database connections) can be interrupted by one; start the server."""
        self.reactor.callWhenRunning(self._take_signals)
        super().startService()
        self.server.whenReady().addErrback(self._failed)

    def _take_signals(self) -> None:
        for number in STOP_SIGNALS:
            self._twisted_handlers[number] = signal.signal(number, self._stop_on_signal)

    def _stop_on_signal(self, number: int, frame: FrameType | None) -> None:
        self.log.info("Received {signal}, shutting down.", signal=signal.Signals(number).name)
        self.reactor.callFromThread(self.reactor.stop)

    def _failed(self, failure: Failure) -> None:
        # The server has logged why; stopped while starting, it is being stopped already.
        if self.running and not failure.check(CancelledError):
            self.reactor.callWhenRunning(self._end_by_sigterm)

    def _end_by_sigterm(self) -> None:
        for number, handler in self._twisted_handlers.items():
            signal.signal(number, handler)
        os.kill(os.getpid(), signal.SIGTERM)


def makeService(options: Options, reactor: Any = None) -> IService:
    """The service ``twistd k8s-sql`` runs (``IServiceMaker.makeService``)."""
    if reactor is None:
        from twisted.internet import reactor
    assert options.service is not None, "the options were not parsed"
    twistd = getattr(options, "parent", None)
    foreground_stdout = (
        twistd is not None
        and twistd.get("nodaemon")
        and not any(twistd.get(name) for name in ("logfile", "logger", "syslog"))
    )
    process = options.process()
    observer = log_observer(process.log_format, process.log_level, sys.stdout) if foreground_stdout else None
    return TwistdService(options.service, reactor, observer)


def main(argv: Sequence[str] | None = None) -> None:
    """The ``k8s-sql`` console script: run in the foreground, log to stdout, stop on SIGTERM."""
    options = Options()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else list(argv))
    except usage.UsageError as error:
        print(f"k8s-sql: {error} (see k8s-sql --help)", file=sys.stderr)
        sys.exit(2)
    process = options.process()
    globalLogBeginner.beginLoggingTo(
        [log_observer(process.log_format, process.log_level, sys.stdout)], redirectStandardIO=False
    )
    assert options.service is not None
    react(serve, (options.service,))


async def serve(reactor: Any, service: Server) -> None:
    """Run ``service`` until the reactor stops (SIGTERM, SIGINT); ``SystemExit(1)`` if it
    cannot start (it has logged why)."""
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    service.startService()
    try:
        await service.whenReady()
    except CancelledError:
        return  # stopped (SIGTERM, SIGINT) while starting
    except Exception:
        raise SystemExit(1) from None
    await Deferred()  # serve until SIGTERM or SIGINT stops the reactor
