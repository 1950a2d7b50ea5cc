"""etcdctl 3.5 lease commands, ``put --lease``, ``lock`` and ``elect`` against k8s-sql.

The plain lease commands are compared with a real etcd's output (lease IDs masked); lock
and election are checked by what they do: exclusion, hand-over on release, and hand-over
when a holder dies and its lease expires.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
from typing import Iterator

import pytest

from tests.processes import ETCDCTL, Etcd, K8sSQL, etcdctl

LEASE_ID = re.compile(r"\b[0-9a-f]{16}\b|\b[0-9a-f]{1,15}\b(?= (granted|keepalived|revoked|already))")
ATTACHED_KEYS = re.compile(r"attached keys\(\[([^]]*)\]\)")


def masked(output: str) -> str:
    """``output`` with lease IDs masked and attached keys sorted (etcd lists them in no order)."""
    output = LEASE_ID.sub("<id>", output)
    return ATTACHED_KEYS.sub(lambda m: f"attached keys([{' '.join(sorted(m.group(1).split()))}])", output)


@pytest.fixture
def server(backend: str) -> Iterator[K8sSQL]:
    with K8sSQL(backend) as serving:
        yield serving


def lease_commands(endpoint: str) -> list[str]:
    """What etcdctl prints for a lease's life, ``masked``."""
    outputs = []

    def run(*arguments: str) -> str:
        result = etcdctl(endpoint, *arguments, check=False)
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        outputs.append(masked(result.stdout + "".join(errors)))
        return result.stdout

    lease = run("lease", "grant", "100").split()[1]
    run("lease", "grant", "1")
    run("put", "--lease", lease, "/locks/b", "1")
    run("put", "--lease", lease, "/locks/a", "2")
    run("put", "--lease", "123", "/locks/c", "3")
    run("lease", "timetolive", "--keys", lease)
    run("lease", "keep-alive", "--once", lease)
    run("lease", "keep-alive", "--once", "123")
    run("lease", "revoke", lease)
    run("lease", "revoke", lease)
    run("lease", "timetolive", lease)
    run("get", "/locks/", "--prefix")
    return outputs


_etcd_outputs: list[str] = []


def test_lease_commands_print_as_with_etcd(server: K8sSQL) -> None:
    if not _etcd_outputs:
        with Etcd() as etcd:
            _etcd_outputs.extend(lease_commands(etcd.endpoint))
    assert lease_commands(server.endpoint) == _etcd_outputs


def test_lease_list(server: K8sSQL) -> None:
    granted = {etcdctl(server.endpoint, "lease", "grant", "60").stdout.split()[1] for _ in range(3)}
    listed = etcdctl(server.endpoint, "lease", "list").stdout.splitlines()
    assert listed[0] == "found 3 leases"
    assert set(listed[1:]) == granted


class Background:
    """An etcdctl command left running, its output lines collected as they come."""

    def __init__(self, endpoint: str, *arguments: str) -> None:
        self.process = subprocess.Popen(
            [ETCDCTL, "--endpoints", endpoint, *arguments], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self.lines: list[str] = []
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    def wait_lines(self, count: int, timeout: float) -> list[str]:
        """The first ``count`` lines, or fewer if ``timeout`` seconds pass first."""
        with self.changed:
            self.changed.wait_for(lambda: len(self.lines) >= count, timeout)
            return list(self.lines)

    def stop(self, how: signal.Signals = signal.SIGINT) -> None:
        if self.process.poll() is None:
            self.process.send_signal(how)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def background(server: K8sSQL) -> Iterator[list[Background]]:
    """Commands started in the background, killed before the server stops."""
    started: list[Background] = []
    yield started
    for command in started:
        command.stop(signal.SIGKILL)


def test_lock_runs_a_command_while_holding_the_lock(server: K8sSQL) -> None:
    result = etcdctl(server.endpoint, "lock", "mylock", "--", "sh", "-c", "echo held $ETCD_LOCK_KEY")
    assert re.fullmatch(r"held mylock/[0-9a-f]+\n", result.stdout)
    assert etcdctl(server.endpoint, "get", "--prefix", "mylock").stdout == ""


def test_lock_excludes_and_hands_over_on_release(server: K8sSQL, background: list[Background]) -> None:
    first = Background(server.endpoint, "lock", "mylock")
    background.append(first)
    assert first.wait_lines(1, 20)[0].startswith("mylock/")
    second = Background(server.endpoint, "lock", "mylock")
    background.append(second)
    assert second.wait_lines(1, 2) == []
    first.stop(signal.SIGINT)
    assert second.wait_lines(1, 20)[0].startswith("mylock/")


def test_lock_of_a_dead_holder_passes_on_when_its_lease_expires(server: K8sSQL, background: list[Background]) -> None:
    first = Background(server.endpoint, "lock", "--ttl", "2", "mylock")
    background.append(first)
    held = first.wait_lines(1, 20)[0]
    second = Background(server.endpoint, "lock", "mylock")
    background.append(second)
    first.stop(signal.SIGKILL)  # no revoke: only expiry frees the lock
    taken = second.wait_lines(1, 20)[0]
    assert taken.startswith("mylock/") and taken != held
    assert etcdctl(server.endpoint, "get", held).stdout == ""


def test_elect_campaigns_and_resigns(server: K8sSQL, background: list[Background]) -> None:
    leader = Background(server.endpoint, "elect", "myelection", "p1")
    background.append(leader)
    key, proposal = leader.wait_lines(2, 20)[:2]
    assert key.startswith("myelection/") and proposal == "p1"
    follower = Background(server.endpoint, "elect", "myelection", "p2")
    background.append(follower)
    observer = Background(server.endpoint, "elect", "--listen", "myelection")
    background.append(observer)
    assert observer.wait_lines(2, 20)[:2] == [key, "p1"]
    assert follower.wait_lines(1, 2) == []
    leader.stop(signal.SIGINT)
    new_key, new_proposal = follower.wait_lines(2, 20)[:2]
    assert new_proposal == "p2" and new_key != key
    assert observer.wait_lines(4, 20)[2:4] == [new_key, "p2"]
