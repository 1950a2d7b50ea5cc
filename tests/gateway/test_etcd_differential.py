"""The same gateway requests to etcd 3.5.1 and to k8s-sql, answers compared field by field
(cluster and member ids and raft terms aside).

The KV scenarios of the gRPC differential tests are replayed through ``/v3/kv/*``; the
gateway scenario adds leases, maintenance, cluster and auth calls, streams (watch and
keep-alive, ended by a ``Grpc-Timeout`` so that both servers end them alike) and bad
input.  Where etcd's texts come from Go's JSON decoder, only the status and code are
compared.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict

from tests.e2e.kv_scenarios import SCENARIOS
from tests.gateway.http import GatewayClient, comparable
from tests.processes import Etcd, K8sSQL

KV_PATHS = {
    "Range": "/v3/kv/range",
    "Put": "/v3/kv/put",
    "DeleteRange": "/v3/kv/deleterange",
    "Txn": "/v3/kv/txn",
    "Compact": "/v3/kv/compaction",
}

Scenario = Callable[[GatewayClient], list[Any]]


def kv_scenario(name: str) -> Scenario:
    """A KV scenario of the gRPC differential tests, through the gateway."""

    def run(client: GatewayClient) -> list[Any]:
        return [
            comparable(*client.post(KV_PATHS[method], MessageToDict(request, preserving_proto_field_name=True)))
            for method, request in SCENARIOS[name]()
        ]

    return run


def shape(status: int, answer: Any) -> Any:
    """Status and field names only, for answers whose values differ by nature."""
    return {"status": status, "fields": sorted(answer)}


def status_and_code(status: int, answer: Any) -> Any:
    """For errors whose text is Go's JSON decoder's."""
    return {"status": status, "code": answer.get("code")}


#: How etcd's gateway ends a stream whose deadline passed: with the gRPC status, or with the
#: bare context error (grpc-gateway reads it as code 2), whichever of its goroutines notices
#: first; both are the same ending.
DEADLINE_ENDINGS = ({"grpc_code": 4, "http_code": 504}, {"grpc_code": 2, "http_code": 500})


def deadline_ended(status: int, lines: list[Any]) -> Any:
    """A stream ended by its deadline, the ending's code left out (see ``DEADLINE_ENDINGS``)."""
    *results, ending = lines
    assert ending["error"]["message"] == "context deadline exceeded", ending
    assert {name: ending["error"][name] for name in ("grpc_code", "http_code")} in DEADLINE_ENDINGS, ending
    return comparable(status, [*results, {"error": "context deadline exceeded"}])


def per_watch(status: int, lines: list[Any]) -> Any:
    """A watch stream ended by its deadline: its results in order for each watch, as how
    watches interleave is timing."""
    answer = deadline_ended(status, lines)
    watches: dict[str, list[Any]] = {}
    for line in answer["answer"]:
        watches.setdefault(line.get("result", {}).get("watch_id", "0") if "result" in line else "end", []).append(line)
    return {"status": answer["status"], "answer": watches}


def gateway_scenario(client: GatewayClient) -> list[Any]:
    post = client.post
    answers = [
        comparable(*post("/v3/kv/put", {"key": "YQ==", "value": "MQ=="})),
        comparable(*post("/v3/lease/grant", {"ID": "4242", "TTL": "600"})),
        comparable(*post("/v3/lease/grant", {"ID": 4242, "TTL": 600})),
        comparable(*post("/v3/kv/put", {"key": "Yg==", "value": "Mg==", "lease": "4242"})),
        comparable(*post("/v3/lease/timetolive", {"ID": "4242", "keys": True})),
        comparable(*post("/v3/kv/lease/timetolive", {"ID": "7"})),
        comparable(*post("/v3/lease/leases", {})),
        comparable(*post("/v3/kv/lease/leases")),
        comparable(*client.stream("/v3/lease/keepalive", b'{"ID": "4242"} {"ID": 7}')),
        comparable(*post("/v3/kv/lease/revoke", {"ID": "4242"})),
        comparable(*post("/v3/lease/revoke", {"ID": "4242"})),
        comparable(*post("/v3/kv/range", {"key": "YQ==", "range_end": "Yw=="})),
        comparable(*post("/v3/kv/range", {"key": "YQ==", "rangeEnd": "Yw==", "sort_order": "DESCEND",
                                          "keys_only": True})),
        comparable(*post("/v3/kv/txn", {
            "compare": [{"key": "YQ==", "target": "VALUE", "value": "MQ=="}],
            "success": [{"request_put": {"key": "YQ==", "value": "Mw==", "prev_kv": True}},
                        {"request_range": {"key": "YQ=="}}],
            "failure": [{"request_delete_range": {"key": "YQ=="}}],
        })),
        comparable(*post("/v3/kv/range", {"key": "YQ==", "revision": "100"})),
        comparable(*post("/v3/kv/put", {"value": "MQ=="})),
        comparable(*post("/v3/maintenance/alarm", {"action": "GET"})),
        comparable(*post("/v3/auth/status", {})),
        comparable(*post("/v3/auth/authenticate", {"name": "root", "password": "x"})),
        shape(*post("/v3/maintenance/status", {})),
        shape(*post("/v3/cluster/member/list", {})),
        shape(*post("/v3/maintenance/hash", {})),
        comparable(*post("/v3beta/kv/range", {"key": "YQ=="})),
        comparable(*post("/v3/kv/range", {"key": "YQ=="}, headers={"Grpc-Timeout": "1n"})),
        # A watch from the start and one for the future, ended by its deadline.
        per_watch(*client.stream(
            "/v3/watch",
            b'{"create_request": {"key": "YQ==", "start_revision": "2", "prev_kv": true}}'
            b'{"create_request": {"key": "YQ==", "range_end": "Yg==", "filters": ["NOPUT"]}}',
            headers={"Grpc-Timeout": "1S"},
        )),
        deadline_ended(*client.stream("/v3/watch", b'{"create_request": {"key": "YQ==", "watch_id": "7"}}'
                                                   b'{"cancel_request": {"watch_id": "7"}}',
                                      headers={"Grpc-Timeout": "500m"})),
        comparable(*client.stream("/v3/lease/keepalive", b"")),
        # Bad input.
        status_and_code(*post("/v3/kv/range", {"key": 5})),
        status_and_code(*post("/v3/kv/range", {"key": "Zm9"})),
        status_and_code(*post("/v3/kv/range", {"key": "YQ==", "limit": 1.5})),
        status_and_code(*post("/v3/kv/range", {"key": "YQ==", "sort_order": "SIDEWAYS"})),
        status_and_code(*post("/v3/kv/range", [])),
        status_and_code(*(lambda s, _, b: (s, json.loads(b)))(*client.request("POST", "/v3/kv/put", b"{garbage"))),
        status_and_code(*(lambda s, _, b: (s, json.loads(b)))(*client.request("POST", "/v3/watch", b"garbage"))),
    ]
    for method, path in (("GET", "/v3/kv/range"), ("POST", "/v3/kv/nothing"), ("GET", "/nothing"),
                         ("POST", "/version"), ("OPTIONS", "/v3/kv/range")):
        status, content_type, body = client.request(method, path)
        answers.append({"status": status, "type": content_type, "body": body.decode()})
    status, content_type, body = client.request("GET", "/version")
    answers.append({"status": status, "version": json.loads(body)})
    status, content_type, body = client.request("GET", "/health")
    answers.append({"status": status, "health": json.loads(body)})
    return answers


SCENARIO_FUNCTIONS: dict[str, Scenario] = {f"kv-{name}": kv_scenario(name) for name in SCENARIOS}
SCENARIO_FUNCTIONS["gateway"] = gateway_scenario

_etcd_answers: dict[str, list[Any]] = {}


def etcd_answers(name: str) -> list[Any]:
    """etcd 3.5.1's answers to scenario ``name``, once per session, from a fresh etcd."""
    if name not in _etcd_answers:
        with Etcd() as etcd, GatewayClient(etcd.endpoint) as client:
            _etcd_answers[name] = SCENARIO_FUNCTIONS[name](client)
    return _etcd_answers[name]


@pytest.mark.parametrize("name", sorted(SCENARIO_FUNCTIONS))
def test_same_answers_as_etcd(name: str, backend: str) -> None:
    with K8sSQL(backend, "--emulated-etcd-version", "3.5.1") as server, GatewayClient(server.endpoint) as client:
        answers = SCENARIO_FUNCTIONS[name](client)
    expected = etcd_answers(name)
    assert len(answers) == len(expected)
    for index, (want, got) in enumerate(zip(expected, answers)):
        assert got == want, f"{name} step {index}:\n  etcd:    {want}\n  k8s-sql: {got}"
