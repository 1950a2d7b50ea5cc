"""The ``k8s-sql`` console script and ``twistd -n k8s-sql`` as child processes: serving
etcdctl, stopping on SIGTERM with status 0, refusing bad options before listening."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from k8s_sql.proto import rpc_pb2
from tests.etcdclient import EtcdClient
from tests.ops.support import K8S_SQL, TWISTD, Twistd, scrape
from tests.processes import ServerProcess, etcdctl, free_port

#: The console script installed beside this Python.
LOCAL = "tcp:0:interface=127.0.0.1"


class ConsoleScript(ServerProcess):
    """The installed ``k8s-sql`` command."""

    def __init__(self, *arguments: str, cwd: str) -> None:
        super().__init__([K8S_SQL, *arguments], cwd=cwd)


def launch(command: str, *arguments: str, cwd: Path) -> ServerProcess:
    if command == "twistd":
        return Twistd(*arguments, cwd=str(cwd))
    return ConsoleScript(*arguments, cwd=str(cwd))


def serving(process: ServerProcess, what: str = "the etcd API") -> str:
    return process.wait_for_output(rf"serving {what} on (127\.0\.0\.1:\d+)").group(1)


def refused_at(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with socket.socket() as probe:
        return probe.connect_ex((host, int(port))) != 0


@pytest.mark.parametrize("command", ["k8s-sql", "twistd"])
def test_serves_etcdctl_and_stops_on_sigterm_with_status_0(command: str, tmp_path: Path) -> None:
    process = launch(command, "--listen", LOCAL, "--metrics-listen", LOCAL, cwd=tmp_path)
    try:
        endpoint = serving(process)
        metrics = serving(process, "metrics and health checks")
        assert etcdctl(endpoint, "put", "greeting", "hello").stdout == "OK\n"
        assert etcdctl(endpoint, "get", "greeting", "--print-value-only").stdout == "hello\n"
        assert scrape(f"http://{metrics}/metrics")["etcd_debugging_mvcc_current_revision", ()] == 2
    finally:
        status = process.stop()
    assert status == 0, process.text()
    output = process.text()
    assert "Received SIGTERM" in output and "Traceback" not in output
    assert (tmp_path / "k8s-sql.db").exists()  # the default database, in the working directory
    assert refused_at(endpoint) and refused_at(metrics)


@pytest.mark.parametrize("command", ["k8s-sql", "twistd"])
def test_sigterm_drains_calls_in_flight_then_exits_0(command: str, tmp_path: Path) -> None:
    process = launch(command, "--listen", LOCAL, "--shutdown-grace", "1s", cwd=tmp_path)
    try:
        endpoint = serving(process)
        with EtcdClient(endpoint) as client:
            requests: queue.Queue[rpc_pb2.WatchRequest | None] = queue.Queue()
            requests.put(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"k")))
            responses = client.Watch.Watch(iter(requests.get, None))
            assert next(responses).created
            started = time.monotonic()
            process.process.send_signal(signal.SIGTERM)
            with pytest.raises(grpc.RpcError) as ended:
                next(responses)  # GOAWAY; after the grace period, the watch ends UNAVAILABLE
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
            requests.put(None)
        assert process.process.wait(15) == 0
        assert time.monotonic() - started < 10
    finally:
        process.stop()
    assert "Traceback" not in process.text()


def test_json_logs_on_stdout(tmp_path: Path) -> None:
    process = launch("k8s-sql", "--listen", LOCAL, "--log-format", "json", cwd=tmp_path)
    try:
        serving(process)
    finally:
        assert process.stop() == 0
    records = [json.loads(line) for line in process.text().splitlines()]
    serving_line = [record for record in records if record["msg"].startswith("k8s-sql serving the etcd API")]
    assert serving_line[0]["logger"] == "k8s_sql.service.K8sSQLService" and serving_line[0]["level"] == "info"
    assert serving_line[0]["endpoint"] == LOCAL


def test_log_level_warn_hides_what_is_routine(tmp_path: Path) -> None:
    port = free_port()
    process = launch("k8s-sql", "--listen", f"tcp:{port}:interface=127.0.0.1", "--log-level", "warn", cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while refused_at(f"127.0.0.1:{port}"):
            assert time.monotonic() < deadline and process.process.poll() is None, process.text()
            time.sleep(0.05)
        assert etcdctl(f"127.0.0.1:{port}", "put", "quiet", "yes").stdout == "OK\n"
    finally:
        status = process.stop()
    assert status == 0 and process.text() == ""


@pytest.mark.parametrize("command", ["k8s-sql", "twistd"])
def test_a_database_that_cannot_be_reached_stops_the_server(command: str, tmp_path: Path) -> None:
    port = free_port()
    process = launch(command, "--listen", f"tcp:{port}:interface=127.0.0.1",
                     "--endpoint", f"mysql://k8s:secret@127.0.0.1:{free_port()}/k8s?connect_timeout=2", cwd=tmp_path)
    status = process.process.wait(60)
    process.stop()
    output = process.text()
    assert "k8s-sql could not start: database mysql://k8s@127.0.0.1:" in output and "secret" not in output
    assert "serving" not in output and refused_at(f"127.0.0.1:{port}")
    # twistd has no exit status of its own for a failed start-up: it ends by SIGTERM.
    assert status == (1 if command == "k8s-sql" else -signal.SIGTERM)


@pytest.mark.parametrize("command", ["k8s-sql", "twistd"])
def test_sigterm_while_starting_stops_with_status_0(command: str, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # a database that never answers
        silent.settimeout(30)
        # PostgreSQL's connect_timeout bounds the whole handshake (PyMySQL's only the TCP connect),
        # so closing the pool, which waits for its threads, ends within it.
        url = f"postgres://k8s@127.0.0.1:{silent.getsockname()[1]}/k8s?connect_timeout=3"
        process = launch(command, "--listen", LOCAL, "--endpoint", url, cwd=tmp_path)
        connection, _ = silent.accept()  # the server is opening its database
        with connection:
            process.process.send_signal(signal.SIGTERM)
            status = process.process.wait(30)
    process.stop()
    output = process.text()
    assert status == 0, output
    assert "k8s-sql stopped before it started" in output
    assert "could not start" not in output and "Traceback" not in output


BAD_OPTIONS = [
    (["--no-such-option"], "option --no-such-option not recognized"),
    (["--listen", "tcp:2379", "--listen", "carrier-pigeon:1"], "bad endpoint description 'carrier-pigeon:1'"),
    (["--endpoint", "mysql:/nohost"], "bad database URL 'mysql:/nohost'"),
    (["--cert-file", "{missing}", "--key-file", "{missing}"], "cannot read TLS file {missing}: No such file or directory"),
    (["--trusted-ca-file", "{missing}"], "TLS: client certificate options need a server certificate and key"),
    (["--auto-compaction-retention", "forever"], "periodic auto-compaction retention must be a duration"),
    (["--poll-interval", "-1s"], "--poll-interval: '-1s' is not a duration"),
]


@pytest.mark.parametrize(("arguments", "message"), BAD_OPTIONS)
def test_bad_options_one_line_and_a_non_zero_status_before_listening(arguments: list[str], message: str,
                                                                     tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    port = free_port()
    arguments = [argument.format(missing=missing) for argument in arguments]
    result = subprocess.run(
        [K8S_SQL, "--listen", f"tcp:{port}:interface=127.0.0.1", "--metrics-listen", f"tcp:{free_port()}", *arguments],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("k8s-sql: ") and message.format(missing=missing) in line, line
    assert not (tmp_path / "k8s-sql.db").exists()  # the database was not even opened


@pytest.mark.parametrize(("arguments", "message"), BAD_OPTIONS[1:3])
def test_twistd_refuses_bad_options_too(arguments: list[str], message: str, tmp_path: Path) -> None:
    result = subprocess.run([TWISTD, "-n", "--pidfile=", "k8s-sql", *arguments], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    # twistd prints the usage first, then the error on the last line.
    assert message in result.stdout.splitlines()[-1]
    assert not (tmp_path / "k8s-sql.db").exists()


def test_twistd_finds_the_plugin_in_the_installed_package(tmp_path: Path) -> None:
    # No PYTHONPATH and a working directory outside the checkout: the plugin comes from the
    # install the tests run on (an editable one in the README's test command).
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    result = subprocess.run([TWISTD, "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=60, env=environment)
    assert result.returncode == 0
    assert any(line.split()[:1] == ["k8s-sql"] for line in result.stdout.splitlines()), result.stdout


def test_help_and_version() -> None:
    result = subprocess.run([K8S_SQL, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("Usage: k8s-sql [options]")
    version = subprocess.run([K8S_SQL, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("k8s-sql ")
