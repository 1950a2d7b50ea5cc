"""Run the same etcd requests against a real etcd and against k8s-sql, and compare the answers.

A scenario is a list of steps; a step is a method name of the KV service and its request.
Each answer is reduced to comparable data: the response as a dict with the header's cluster,
member and raft term removed, or the gRPC error's code and message.  Two fresh servers must
give equal lists.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from tests.etcdclient import EtcdClient

Step = tuple[str, Message]
IDENTITY_FIELDS = ("clusterId", "memberId", "raftTerm", "cluster_id", "member_id", "raft_term")


def strip_identity(value: Any) -> Any:
    """The data with every header's cluster id, member id and raft term removed."""
    if isinstance(value, dict):
        return {
            key: strip_identity(item)
            for key, item in value.items()
            if key not in IDENTITY_FIELDS
        }
    if isinstance(value, list):
        return [strip_identity(item) for item in value]
    return value


def answer(call: Callable[[Message], Message], request: Message) -> Any:
    """What one call returned, as comparable data."""
    try:
        response = call(request, timeout=30)
    except grpc.RpcError as error:
        return {"error": error.code().name, "message": error.details()}
    return strip_identity(MessageToDict(response, preserving_proto_field_name=False))


def run(client: EtcdClient, steps: Iterable[Step], service: str = "KV") -> list[Any]:
    """The answers to ``steps``, in order."""
    stub = getattr(client, service)
    return [answer(getattr(stub, method), request) for method, request in steps]


def compare(reference: Sequence[Any], candidate: Sequence[Any], steps: Sequence[Step]) -> None:
    """Fail at the first step whose answers differ, naming the step."""
    assert len(reference) == len(candidate)
    for index, (expected, got, (method, request)) in enumerate(zip(reference, candidate, steps)):
        assert got == expected, (
            f"step {index}: {method}({MessageToDict(request)}) answered\n  etcd:    {expected}\n  k8s-sql: {got}"
        )
