"""The command line's options: defaults, conversions, checks, and what twistd is given."""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from twisted.application.service import Application, IService, Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.testing import MemoryReactor
from twisted.logger import ILogObserver
from twisted.python import usage
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from k8s_sql.housekeeping.compactor import PeriodicRetention, RevisionRetention
from k8s_sql.config import ConfigurationError, ServerConfig, plan_server
from k8s_sql.service import K8sSQLService
from k8s_sql import tap
from k8s_sql.tap import STOP_SIGNALS, Options, TwistdService, makeService
from tests.grpc.support import Certificates


def parsed(*arguments: str) -> Options:
    options = Options(reactor=MemoryReactor())
    options.parseOptions(list(arguments))
    return options


def refusal(*arguments: str) -> str:
    with pytest.raises(usage.UsageError) as refused:
        parsed(*arguments)
    return str(refused.value)


def test_the_defaults_are_the_servers() -> None:
    assert parsed().config() == ServerConfig()


def test_every_option_reaches_the_configuration(certificates: Certificates) -> None:
    options = parsed(
        "--listen", "tcp:2379:interface=0.0.0.0", "--listen", "unix:/tmp/k8s-sql.sock",
        "--endpoint", "postgres://k8s:secret@db:5432/k8s", "--name", "node-1",
        "--cert-file", certificates.path("server.pem"), "--key-file", certificates.path("server.key"),
        "--trusted-ca-file", certificates.path("ca.pem"), "--client-cert-auth",
        "--metrics-listen", "tcp:2381:interface=127.0.0.1",
        "--advertise-client-urls", "https://10.0.0.1:2379,https://node-1:2379", "--advertise-client-urls", "https://lb:2379",
        "--emulated-etcd-version", "3.5.21",
        "--auto-compaction-mode", "revision", "--auto-compaction-retention", "1000", "--compaction-batch", "250",
        "--max-txn-ops", "256", "--max-request-bytes", "3145728",
        "--poll-interval", "250ms", "--progress-notify-interval", "5s", "--lease-min-ttl", "5",
        "--lease-sweep-interval", "1", "--slow-sql-threshold", "0", "--shutdown-grace", "1m",
        "--grpc-keepalive-interval", "0", "--grpc-keepalive-timeout", "5s",
        "--member-timeout", "30s", "--peer-listen", "tcp:2380:interface=0.0.0.0",
        "--advertise-peer-urls", "https://10.0.0.1:2380", "--peer-cert-file", certificates.path("peer.pem"),
        "--peer-key-file", certificates.path("peer.key"), "--peer-trusted-ca-file", certificates.path("ca.pem"),
        "--peer-client-cert-auth",
        "--log-format", "json", "--log-level", "warn",
    )
    assert options.config() == ServerConfig(
        listen=["tcp:2379:interface=0.0.0.0", "unix:/tmp/k8s-sql.sock"],
        endpoint="postgres://k8s:secret@db:5432/k8s", name="node-1",
        cert_file=certificates.path("server.pem"), key_file=certificates.path("server.key"),
        trusted_ca_file=certificates.path("ca.pem"), client_cert_auth=True,
        metrics_listen=["tcp:2381:interface=127.0.0.1"],
        advertise_client_urls=["https://10.0.0.1:2379", "https://node-1:2379", "https://lb:2379"],
        emulated_etcd_version="3.5.21",
        auto_compaction_mode="revision", auto_compaction_retention="1000", compaction_batch=250,
        max_txn_ops=256, max_request_bytes=3145728,
        poll_interval=0.25, progress_notify_interval=5.0, lease_min_ttl=5,
        lease_sweep_interval=1.0, slow_sql_threshold=0.0, shutdown_grace=60.0,
        grpc_keepalive_interval=0.0, grpc_keepalive_timeout=5.0,
        member_timeout=30.0, peer_listen="tcp:2380:interface=0.0.0.0", advertise_peer_urls=["https://10.0.0.1:2380"],
        peer_cert_file=certificates.path("peer.pem"), peer_key_file=certificates.path("peer.key"),
        peer_trusted_ca_file=certificates.path("ca.pem"), peer_client_cert_auth=True,
    )
    assert (options["log-format"], options["log-level"]) == ("json", "warn")


def test_every_configuration_field_has_an_option() -> None:
    fields = {field.name.replace("_", "-") for field in dataclasses.fields(ServerConfig)}
    options = parsed()
    assert fields <= set(options.keys())


@pytest.mark.parametrize(("arguments", "message"), [
    (["--bogus"], "option --bogus not recognized"),
    (["--poll-interval", "soon"], "--poll-interval: 'soon' is not a duration"),
    (["--shutdown-grace", "0"], "--shutdown-grace: '0' is not greater than zero"),
    (["--grpc-keepalive-timeout", "0"], "--grpc-keepalive-timeout: '0' is not greater than zero"),
    (["--lease-min-ttl", "1.5"], "--lease-min-ttl: '1.5' is not a whole number greater than zero"),
    (["--log-format", "xml"], "--log-format: 'xml' is not one of text, json"),
    (["--log-level", "loud"], "--log-level: 'loud' is not one of debug, info, warn, error, critical"),
    (["--auto-compaction-mode", "daily"], "--auto-compaction-mode: 'daily' is not one of periodic, revision"),
    (["--auto-compaction-mode", "revision", "--auto-compaction-retention", "1h"],
     "revision auto-compaction retention must be a number of revisions, not '1h'"),
    (["--endpoint", "oracle://db/x"], "unsupported database URL 'oracle://db/x'"),
    (["--endpoint", "mysql://u:secret@db/k8s?colour=blue"], "unknown mysql database URL option(s): colour"),
    (["--listen", "tcp:twentythree"], "bad endpoint description 'tcp:twentythree'"),
    (["--metrics-listen", "carrier-pigeon:2381"], "bad endpoint description 'carrier-pigeon:2381': Unknown endpoint type"),
    (["--emulated-etcd-version", "latest"], "the emulated etcd version must look like 3.6.4, not 'latest'"),
    (["--advertise-client-urls", "10.0.0.1:2379"], "bad client URL '10.0.0.1:2379'"),
    (["--advertise-client-urls", "http://node-1"], "bad client URL 'http://node-1'"),
    (["--client-cert-auth"], "TLS: client certificate options need a server certificate and key"),
    (["--member-timeout", "0"], "--member-timeout: '0' is not greater than zero"),
    (["--peer-listen", "tcp:nope"], "bad endpoint description 'tcp:nope'"),
    (["--peer-listen", "tcp:0", "--advertise-peer-urls", "10.0.0.1:2380"], "bad peer URL '10.0.0.1:2380'"),
    (["--peer-listen", "tcp:0", "--advertise-peer-urls", "ftp://10.0.0.1:2380"], "bad peer URL 'ftp://10.0.0.1:2380'"),
    (["--peer-listen", "tcp:0", "--advertise-peer-urls", "http://node-1"], "bad peer URL 'http://node-1'"),
    (["--advertise-peer-urls", "http://node-1:2380"], "--advertise-peer-urls and --peer-client-cert-auth need --peer-listen"),
    (["--peer-listen", "tcp:0", "--peer-client-cert-auth"], "TLS: client certificate options need a server certificate"),
])
def test_bad_options_are_refused_in_one_line(arguments: list[str], message: str) -> None:
    text = refusal(*arguments)
    assert message in text and "\n" not in text
    assert "secret" not in text


def test_tls_files_are_read_and_checked(certificates: Certificates, tmp_path: Path) -> None:
    cert, key, ca = certificates.path("server.pem"), certificates.path("server.key"), certificates.path("ca.pem")
    missing = str(tmp_path / "missing.pem")
    assert refusal("--cert-file", missing, "--key-file", key) == (
        f"cannot read TLS file {missing}: No such file or directory"
    )
    assert refusal("--cert-file", cert) == "TLS: TLS needs both a certificate file and a key file"
    assert refusal("--cert-file", cert, "--key-file", certificates.path("client.key")).startswith(
        f"TLS: cannot use {cert} with"
    )
    assert refusal("--cert-file", cert, "--key-file", key, "--client-cert-auth") == (
        "TLS: client certificate authentication needs a trusted CA file"
    )
    assert refusal("--cert-file", cert, "--key-file", key, "--trusted-ca-file", key) == f"TLS: {key} holds no PEM certificate"
    conflicting = f"h2tls:certFile={cert}:keyFile={key}:tcp:2379"
    assert refusal("--cert-file", cert, "--key-file", key, "--listen", conflicting).startswith(
        f"{conflicting!r} has TLS of its own"
    )
    assert parsed("--cert-file", cert, "--key-file", key, "--trusted-ca-file", ca, "--client-cert-auth")


def test_peer_tls_files_are_read_and_checked(certificates: Certificates, tmp_path: Path) -> None:
    cert, key, ca = certificates.path("peer.pem"), certificates.path("peer.key"), certificates.path("ca.pem")
    missing = str(tmp_path / "missing.pem")
    assert refusal("--peer-cert-file", cert) == "TLS: peer TLS needs both --peer-cert-file and --peer-key-file"
    assert refusal("--peer-trusted-ca-file", missing) == f"cannot read TLS file {missing}: No such file or directory"
    assert refusal("--peer-trusted-ca-file", key) == f"TLS: {key} holds no PEM certificate"
    assert refusal("--peer-cert-file", cert, "--peer-key-file", certificates.path("client.key")).startswith(
        f"TLS: cannot use {cert} with"
    )
    conflicting = f"h2tls:certFile={cert}:keyFile={key}:tcp:2380"
    assert refusal("--peer-cert-file", cert, "--peer-key-file", key, "--peer-listen", conflicting).startswith(
        f"{conflicting!r} has TLS of its own"
    )
    plan = plan_server(parsed("--peer-listen", "tcp:0", "--peer-cert-file", cert, "--peer-key-file", key,
                              "--peer-trusted-ca-file", ca, "--peer-client-cert-auth").config(), MemoryReactor())
    assert plan.peer is not None and plan.peer[0] == "tcp:0" and plan.peer_tls.chain and plan.peer_tls.trust
    assert plan.peer_serves_tls(parsed("--peer-listen", "tcp:0", "--peer-cert-file", cert, "--peer-key-file", key).config())
    assert plan_server(ServerConfig(), MemoryReactor()).peer is None


def test_the_plan_holds_the_endpoints_and_the_compaction_policy() -> None:
    reactor = MemoryReactor()
    plan = plan_server(ServerConfig(listen=["tcp:1:interface=127.0.0.1", "tcp:2"], metrics_listen=["tcp:3"],
                                    auto_compaction_retention="2"), reactor)
    assert [description for description, _ in plan.grpc] == ["tcp:1:interface=127.0.0.1", "tcp:2"]
    assert [description for description, _ in plan.metrics] == ["tcp:3"]
    assert plan.compaction == PeriodicRetention(7200.0)
    assert plan_server(ServerConfig(auto_compaction_mode="revision", auto_compaction_retention="5"),
                       reactor).compaction == RevisionRetention(5)
    assert plan_server(ServerConfig(), reactor).compaction is None
    with pytest.raises(ConfigurationError, match="nothing to listen on"):
        plan_server(ServerConfig(listen=[]), reactor)
    with pytest.raises(ConfigurationError):
        K8sSQLService(ServerConfig(endpoint="nope://"), reactor)


class TwistdOptions(dict):
    """The parts of twistd's ServerOptions that ``makeService`` reads."""


def twistd_parent(**settings: Any) -> TwistdOptions:
    return TwistdOptions({"nodaemon": True, "logfile": None, "logger": None, "syslog": False, **settings})


@pytest.mark.parametrize(("parent", "ours"), [
    (twistd_parent(), True),
    (twistd_parent(nodaemon=False), False),
    (twistd_parent(logfile="k8s-sql.log"), False),
    (twistd_parent(logger="my.observer"), False),
    (twistd_parent(syslog=True), False),
    (None, False),
])
def test_twistd_logs_through_our_observer_in_the_foreground_only(parent: TwistdOptions | None, ours: bool) -> None:
    options = parsed("--log-format", "json")
    if parent is not None:
        options.parent = parent
    reactor = MemoryReactor()
    service = makeService(options, reactor)
    assert isinstance(service, TwistdService) and verifyObject(IService, service)
    application = Application("k8s-sql")
    service.setServiceParent(application)
    observer = application.getComponent(ILogObserver, None)
    assert (observer is not None) == ours
    if ours:
        assert verifyObject(ILogObserver, observer)
    assert list(IService(application)) == [service]


class Reactor:
    """What TwistdService asks of the reactor, recorded."""

    def __init__(self) -> None:
        self.when_running: list[tuple[Any, tuple[Any, ...]]] = []
        self.from_thread: list[Any] = []
        self.stopped = False

    def callWhenRunning(self, function: Any, *args: Any) -> None:
        self.when_running.append((function, args))

    def callFromThread(self, function: Any, *args: Any) -> None:
        self.from_thread.append(function)

    def stop(self) -> None:
        self.stopped = True

    def run(self) -> None:
        """The reactor starts: what waited for it runs."""
        waiting, self.when_running = self.when_running, []
        for function, args in waiting:
            function(*args)


class Server(Service):
    """A server that is ready when the test says."""

    def __init__(self) -> None:
        self.ready: Deferred[list[Any]] = Deferred()

    def whenReady(self) -> Deferred[list[Any]]:
        return self.ready


@pytest.fixture
def own_signals() -> Any:
    """Whatever a test installs, the process's signal handlers are put back afterwards."""
    saved = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    yield saved
    for number, handler in saved.items():
        signal.signal(number, handler)


def test_twistd_takes_the_stop_signals_once_running_so_a_clean_stop_exits_0(own_signals: Any) -> None:
    reactor = Reactor()
    server = Server()
    service = TwistdService(server, reactor, None)  # type: ignore[arg-type]
    service.startService()
    assert server.running and signal.getsignal(signal.SIGTERM) == own_signals[signal.SIGTERM]
    reactor.run()
    handler = signal.getsignal(signal.SIGTERM)
    assert handler != own_signals[signal.SIGTERM] and signal.getsignal(signal.SIGINT) == handler
    handler(signal.SIGTERM, None)  # type: ignore[operator]
    assert reactor.from_thread == [reactor.stop]


def test_twistd_ends_by_sigterm_through_twisteds_handler_when_the_server_cannot_start(
    own_signals: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    killed: list[tuple[int, int]] = []
    monkeypatch.setattr(tap.os, "kill", lambda pid, number: killed.append((pid, number)))
    reactor = Reactor()
    server = Server()
    service = TwistdService(server, reactor, None)  # type: ignore[arg-type]
    service.startService()
    reactor.run()
    server.ready.errback(Failure(ConnectionRefusedError("no database")))
    reactor.run()
    assert killed == [(os.getpid(), signal.SIGTERM)]
    assert signal.getsignal(signal.SIGTERM) == own_signals[signal.SIGTERM]


def test_twistd_stopped_while_starting_is_a_clean_stop(own_signals: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    killed: list[tuple[int, int]] = []
    monkeypatch.setattr(tap.os, "kill", lambda pid, number: killed.append((pid, number)))
    reactor = Reactor()
    server = Server()
    service = TwistdService(server, reactor, None)  # type: ignore[arg-type]
    service.startService()
    reactor.run()
    server.ready.errback(Failure(CancelledError()))
    reactor.run()
    assert killed == []


def test_the_server_is_a_tree_of_named_stages_in_start_order() -> None:
    server = K8sSQLService(
        ServerConfig(auto_compaction_retention="1h", metrics_listen=["tcp:0:interface=127.0.0.1"]), MemoryReactor()
    )
    assert [child.name for child in server] == [
        "store", "follower", "housekeeping", "etcd", "peers", "client", "metrics", "members",
    ]
    assert [child.name for child in server.getServiceNamed("peers")] == ["signals"]
    assert [child.name for child in server.getServiceNamed("housekeeping")] == ["lease-sweeper", "compactor"]
    assert [child.name for child in server.getServiceNamed("client")] == ["tcp:2379:interface=127.0.0.1"]
    assert [child.name for child in server.getServiceNamed("metrics")] == ["tcp:0:interface=127.0.0.1"]
    assert not server.running and server.ports == []
