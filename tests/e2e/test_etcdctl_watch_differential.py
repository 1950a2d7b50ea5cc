"""etcdctl watch differential tests: the same watches print the same events for etcd and k8s-sql.

The writes come first; then ``etcdctl watch`` replays them from a past revision (and, in
interactive mode, asks for progress), and is stopped once it printed everything.  How a
replay is cut into responses is the server's choice, so what is compared is the sequence of
events and of progress notifications (by their header revision), as JSON.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

from tests.differential import strip_identity
from tests.processes import ETCDCTL, Etcd, K8sSQL, etcdctl

WRITES = [
    ["put", "/w/a", "1"],
    ["put", "/w/b", "1"],
    ["put", "/x", "outside"],
    ["put", "/w/a", "2"],
    ["del", "/w/b"],
    ["txn"],
    ["put", "/w/c", "3"],
    ["del", "/w/", "--prefix"],
]
TXN = 'mod("/w/a") > "0"\n\nput /w/a 3\nput /w/d 4\n\n\n'


def write_all(endpoint: str) -> None:
    for arguments in WRITES:
        etcdctl(endpoint, *arguments, input=TXN if arguments == ["txn"] else None)


def watch_output(endpoint: str, arguments: list[str], stdin: str | None, items: int) -> list[Any]:
    """The first ``items`` events and progress notifications ``etcdctl watch`` prints."""
    process = subprocess.Popen(
        [ETCDCTL, "--endpoints", endpoint, "-w", "json", "watch", *arguments],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    if stdin is not None:
        for line in stdin.splitlines(keepends=True):
            process.stdin.write(line)
            process.stdin.flush()
            time.sleep(0.5)
    printed: list[Any] = []
    try:
        while len(printed) < items:
            line = process.stdout.readline()
            assert line, f"etcdctl watch ended early: {process.stderr.read() if process.stderr else ''}"
            if line.startswith("{"):
                response = json.loads(line)
                events = response.get("Events") or []
                printed.extend(events or [{"progress": strip_identity(response["Header"])}])
    finally:
        process.kill()
        process.wait()
    return printed


CASES = [
    (["--prefix", "/w/", "--rev", "2", "--prev-kv"], None, 10),
    (["/w/a", "--rev", "1"], None, 4),
    (["-i"], "watch --rev 3 --prefix /w/\nprogress\n", 10),
]


def test_etcdctl_watch_prints_the_same(backend: str) -> None:
    with Etcd() as etcd:
        write_all(etcd.endpoint)
        expected = [watch_output(etcd.endpoint, *case) for case in CASES]
    with K8sSQL(backend) as server:
        write_all(server.endpoint)
        got = [watch_output(server.endpoint, *case) for case in CASES]
    for case, want, have in zip(CASES, expected, got):
        assert have == want, f"etcdctl watch {' '.join(case[0])}"
