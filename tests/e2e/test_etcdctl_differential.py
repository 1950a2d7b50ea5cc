"""etcdctl differential tests: the same etcdctl commands print the same JSON for etcd and k8s-sql."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.differential import strip_identity
from tests.processes import Etcd, K8sSQL, etcdctl

TXN_CREATE = 'mod("/registry/x") = "0"\n\nput /registry/x created\n\nget /registry/x\n\n'
TXN_UPDATE = 'mod("/registry/x") = "2"\n\nput /registry/x updated\n\nget /registry/x\n\n'

COMMANDS: list[tuple[list[str], str | None]] = [
    (["put", "/registry/a", "1"], None),
    (["put", "/registry/b", "2"], None),
    (["put", "/registry/a", "3", "--prev-kv"], None),
    (["get", "/registry/", "--prefix"], None),
    (["get", "/registry/", "--prefix", "--limit", "1"], None),
    (["get", "/registry/", "--prefix", "--keys-only", "--order", "DESCEND", "--sort-by", "MODIFY"], None),
    (["get", "/registry/a", "--rev", "2"], None),
    (["get", "/registry/", "--from-key"], None),
    (["txn"], TXN_CREATE),
    (["txn"], TXN_CREATE),
    (["txn"], TXN_UPDATE),
    (["del", "/registry/b", "--prev-kv"], None),
    (["del", "/registry/nothing"], None),
    (["compaction", "3"], None),
    (["get", "/registry/a", "--rev", "2"], None),
    (["compaction", "100"], None),
    (["get", "", "--prefix"], None),
]


def run_commands(endpoint: str) -> list[Any]:
    """What etcdctl prints for each command: parsed JSON with identities stripped, or its error."""
    answers = []
    for arguments, stdin in COMMANDS:
        result = etcdctl(endpoint, "-w", "json", *arguments, check=False, input=stdin)
        if result.returncode == 0 and result.stdout.strip().startswith("{"):
            answers.append(strip_identity(json.loads(result.stdout)))
        else:
            errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
            answers.append({"exit": result.returncode, "stdout": result.stdout, "errors": errors})
    return answers


@pytest.mark.parametrize("workers", [1, 2])
def test_etcdctl_prints_the_same(backend: str, workers: int) -> None:
    with Etcd() as etcd:
        expected = run_commands(etcd.endpoint)
    with K8sSQL(backend, "--workers", str(workers)) as server:
        got = run_commands(server.endpoint)
    for (arguments, _), want, have in zip(COMMANDS, expected, got):
        assert have == want, f"etcdctl {' '.join(arguments)}"
