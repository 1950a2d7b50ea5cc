"""The gateway's IServerCall adapter, driven through the twisted.web site in memory:
registered handlers (doubles here) answer /v3/ paths as etcd's gateway answers them."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from k8s_sql.gateway.call import GatewayCall
from k8s_sql.grpc.interfaces import IServerCall
from k8s_sql.grpc.registry import CallKind, MethodRegistry
from k8s_sql.grpc.status import GRPCError, StatusCode
from k8s_sql.proto import kv_pb2, rpc_pb2

from tests.gateway.support import Client, partial_chunks

HEADER = rpc_pb2.ResponseHeader(cluster_id=1, member_id=2, revision=3, raft_term=4)
JSON_HEADER = {"cluster_id": "1", "member_id": "2", "revision": "3", "raft_term": "4"}


def serialize(message: Any) -> bytes:
    return message if isinstance(message, bytes) else message.SerializeToString()


class Handlers:
    """Handler doubles at etcd's method paths; each records what it saw."""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.requests: list[Any] = []
        self.pending: Deferred[Any] | None = None
        self.cancelled = 0
        self.sent = 0
        self.gate: Deferred[None] = Deferred()
        self.registry = MethodRegistry()
        r = self.registry
        r.add("/etcdserverpb.KV/Range", CallKind.UNARY, self.range, rpc_pb2.RangeRequest.FromString, serialize)
        r.add("/etcdserverpb.KV/Put", CallKind.UNARY, self.wait, rpc_pb2.PutRequest.FromString, serialize)
        r.add("/etcdserverpb.KV/DeleteRange", CallKind.UNARY, self.fail, rpc_pb2.DeleteRangeRequest.FromString, serialize)
        r.add("/etcdserverpb.KV/Compact", CallKind.UNARY, self.crash, rpc_pb2.CompactionRequest.FromString, serialize)
        r.add("/etcdserverpb.Watch/Watch", CallKind.BIDI, self.watch, rpc_pb2.WatchRequest.FromString, serialize)
        r.add("/etcdserverpb.Lease/LeaseKeepAlive", CallKind.BIDI, self.keep_alive, rpc_pb2.LeaseKeepAliveRequest.FromString,
               serialize)
        r.add("/etcdserverpb.Maintenance/Snapshot", CallKind.SERVER_STREAM, self.snapshot, rpc_pb2.SnapshotRequest.FromString,
                        serialize)

    async def range(self, request: rpc_pb2.RangeRequest, call: Any) -> bytes:
        self.calls.append(call)
        self.requests.append(request)
        response = rpc_pb2.RangeResponse(header=HEADER, count=1, kvs=[kv_pb2.KeyValue(key=request.key, value=b"v")])
        return response.SerializeToString()  # pre-encoded, as KVService.range answers

    async def wait(self, request: Any, call: Any) -> Any:
        self.calls.append(call)
        self.pending = Deferred(lambda _: setattr(self, "cancelled", self.cancelled + 1))
        return await self.pending

    async def fail(self, request: Any, call: Any) -> Any:
        raise GRPCError(StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision")

    async def crash(self, request: Any, call: Any) -> Any:
        raise ZeroDivisionError("boom")

    async def watch(self, call: Any) -> None:
        """Answers each request with a response naming its watch id; after the last, waits."""
        self.calls.append(call)
        while (request := await call.receive()) is not None:
            self.requests.append(request)
            await call.send(rpc_pb2.WatchResponse(header=HEADER, watch_id=request.create_request.watch_id,
                                                  created=True))
        await self.wait(None, call)

    async def keep_alive(self, call: Any) -> None:
        """Per request: one response, then, once ``gate`` fires, ten more; counts them in ``sent``."""
        self.calls.append(call)
        while (request := await call.receive()) is not None:
            response = rpc_pb2.LeaseKeepAliveResponse(header=HEADER, ID=request.ID, TTL=5)
            await call.send(response)
            self.sent += 1
            self.gate = Deferred()
            await self.gate
            for _ in range(10):
                await call.send(response)
                self.sent += 1

    async def snapshot(self, request: Any, call: Any) -> None:
        raise GRPCError(StatusCode.UNIMPLEMENTED, "no snapshots here")


@pytest.fixture
def handlers() -> Handlers:
    return Handlers()


@pytest.fixture
def client(handlers: Handlers) -> Client:
    return Client(handlers.registry)


def test_a_unary_call_is_the_handler_with_json_in_and_out(client: Client, handlers: Handlers) -> None:
    response = client.post("/v3/kv/range", {"key": "Zm9v", "limit": "5"}, headers={"Authorization": "t0k",
                                                                                   "Grpc-Metadata-Tenant": "a"})
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["grpc-metadata-content-type"] == "application/grpc"
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.json() == {"header": JSON_HEADER, "kvs": [{"key": "Zm9v", "value": "dg=="}], "count": "1"}
    assert handlers.requests == [rpc_pb2.RangeRequest(key=b"foo", limit=5)]
    (call,) = handlers.calls
    assert verifyObject(IServerCall, call) and verifyObject(IPushProducer, call)
    assert call.method == "/etcdserverpb.KV/Range"
    assert ("authorization", "t0k") in call.metadata and ("tenant", "a") in call.metadata
    assert client.observed[0][:2] == ("/etcdserverpb.KV/Range", StatusCode.OK)
    assert not client.gateway.calls


def test_keep_alive_serves_several_requests_on_one_connection(client: Client) -> None:
    for key in ("YQ==", "Yg==", ""):
        assert client.post("/v3/kv/range", {"key": key} if key else None).status == 200
    assert client.post("/v3beta/kv/range", {"key": "YQ=="}).status == 200


@pytest.mark.parametrize(("body", "status", "code"), [
    (b'{"key": 5}', 400, 3),
    (b"garbage", 400, 3),
    (b'"str"', 400, 3),
    (b'{"key": "Zm9v"} trailing', 200, None),
])
def test_a_unary_request_that_does_not_decode_is_400(client: Client, body: bytes, status: int,
                                                      code: int | None) -> None:
    response = client.request("POST", "/v3/kv/range", body)
    assert response.status == status
    if code is not None:
        answer = response.json()
        assert answer["code"] == code and answer["error"] == answer["message"] and answer["error"].startswith("json:")
        assert not client.observed, "a request refused before its handler is no gRPC call"


def test_errors_of_the_handler_are_etcds_status_and_json(client: Client) -> None:
    response = client.post("/v3/kv/deleterange", {"key": "YQ=="})
    assert response.status == 400
    message = "etcdserver: mvcc: required revision is a future revision"
    assert response.json() == {"error": message, "code": 11, "message": message}
    response = client.post("/v3/kv/compaction", {})
    assert response.status == 500
    assert response.json()["code"] == 2 and "boom" in response.json()["message"]
    assert client.post("/v3/kv/txn", {}).json()["code"] == StatusCode.UNIMPLEMENTED  # not registered here
    assert client.post("/v3/kv/txn", {}).status == 501


@pytest.mark.parametrize(("method", "path", "status", "body"), [
    ("GET", "/v3/kv/range", 405, b"Method Not Allowed\n"),
    ("PUT", "/v3/kv/range", 405, b"Method Not Allowed\n"),
    ("POST", "/v3/kv/nothing", 404, b"Not Found\n"),
    ("POST", "/v3/maintenance/hashkvx", 404, b"Not Found\n"),
    ("GET", "/nothing", 404, b"404 page not found\n"),
    ("GET", "/", 404, b"404 page not found\n"),
    ("POST", "/version", 405, b"Method Not Allowed\n"),
])
def test_unknown_paths_and_methods_are_answered_as_go_answers_them(client: Client, method: str, path: str,
                                                                    status: int, body: bytes) -> None:
    response = client.request(method, path)
    assert (response.status, response.body) == (status, body)
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


def test_options_is_a_cors_preflight(client: Client) -> None:
    response = client.request("OPTIONS", "/v3/kv/range")
    assert (response.status, response.body) == (200, b"")
    assert response.headers["access-control-allow-methods"] == "POST, GET, OPTIONS, PUT, DELETE"


def test_version(client: Client) -> None:
    response = client.request("GET", "/version")
    assert response.json() == {"etcdserver": "3.6.15", "etcdcluster": "3.6.0"}


def test_a_watch_streams_one_result_per_chunk_and_ends_when_the_client_goes(client: Client,
                                                                             handlers: Handlers) -> None:
    body = b'{"create_request": {"key": "YQ==", "watch_id": 1}} {"create_request": {"key": "YQ==", "watch_id": 2}}'
    client.send("POST", "/v3/watch", body)
    chunks = partial_chunks(client.transport.value())
    assert [chunk.endswith(b"}\n") for chunk in chunks] == [True, True]
    results = [json.loads(chunk) for chunk in chunks]
    assert [r["result"]["watch_id"] for r in results] == ["1", "2"]
    assert results[0] == {"result": {"header": JSON_HEADER, "watch_id": "1", "created": True}}
    assert b"transfer-encoding: chunked" in client.transport.value().lower()
    assert handlers.pending is not None and not handlers.cancelled
    client.channel.connectionLost(Failure(ConnectionError("gone")))
    assert handlers.cancelled == 1
    assert client.observed[-1][:2] == ("/etcdserverpb.Watch/Watch", StatusCode.CANCELLED)
    assert not client.gateway.calls


def test_a_later_request_that_does_not_decode_ends_the_requests_there(client: Client, handlers: Handlers) -> None:
    client.send("POST", "/v3/watch", b'{"create_request": {"watch_id": 1}} {"create_request": 5} {"x": 1}')
    assert [r.create_request.watch_id for r in handlers.requests] == [1]
    assert handlers.pending is not None  # the handler saw the end of the requests


def test_a_first_stream_request_that_does_not_decode_is_500(client: Client, handlers: Handlers) -> None:
    response = client.request("POST", "/v3/watch", b"garbage")
    assert response.status == 500 and response.json()["code"] == 2
    assert not handlers.calls


def test_an_error_before_the_first_message_is_a_whole_response(client: Client) -> None:
    response = client.post("/v3/maintenance/snapshot", {})
    assert response.status == 501
    assert response.json() == {"error": "no snapshots here", "code": 12, "message": "no snapshots here"}


def test_a_stream_without_messages_is_an_empty_200(client: Client) -> None:
    response = client.request("POST", "/v3/lease/keepalive", b"")
    assert (response.status, response.chunks) == (200, [])


def test_the_deadline_ends_a_unary_call_504(client: Client, handlers: Handlers) -> None:
    client.send("POST", "/v3/kv/put", b"{}", headers={"Grpc-Timeout": "2S"})
    (call,) = handlers.calls
    assert call.deadline == 2.0
    client.clock.advance(1.9)
    assert not client.transport.value()
    client.clock.advance(0.1)
    response = client.response()
    assert response.status == 504
    assert response.json() == {"error": "context deadline exceeded", "code": 4, "message": "context deadline exceeded"}
    assert handlers.cancelled == 1


def test_the_deadline_ends_a_started_stream_with_an_error_chunk(client: Client, handlers: Handlers) -> None:
    client.send("POST", "/v3/watch", b'{"create_request": {}}', headers={"Grpc-Timeout": "1S"})
    client.clock.advance(1)
    response = client.response()
    assert response.status == 200
    assert response.lines()[-1] == {"error": {"grpc_code": 4, "http_code": 504, "message": "context deadline exceeded",
                                              "http_status": "Gateway Timeout"}}
    assert handlers.cancelled == 1


def test_a_bad_grpc_timeout_is_400(client: Client) -> None:
    response = client.post("/v3/kv/range", {}, headers={"Grpc-Timeout": "soon"})
    assert response.status == 400 and response.json()["message"] == "invalid grpc-timeout: soon"


def test_a_stream_waits_while_the_connection_is_paused(client: Client, handlers: Handlers) -> None:
    client.send("POST", "/v3/lease/keepalive", b'{"ID": 1}')
    assert handlers.sent == 1
    # What the transport does when its buffer is full: pause its producer, the channel,
    # which pauses the request's producer, the call.
    client.transport.producer.pauseProducing()
    handlers.gate.callback(None)
    assert handlers.sent == 1, "send() waits while paused"
    assert len(partial_chunks(client.transport.value())) == 2, "one message written, then no more"
    client.transport.producer.resumeProducing()
    assert handlers.sent == 11
    response = client.response()
    assert response.status == 200 and len(response.lines()) == 11
    assert response.lines()[0] == {"result": {"header": JSON_HEADER, "ID": "1", "TTL": "5"}}


def test_a_paused_stream_whose_client_goes_is_cancelled(client: Client, handlers: Handlers) -> None:
    client.send("POST", "/v3/lease/keepalive", b'{"ID": 1}')
    client.transport.producer.pauseProducing()
    handlers.gate.callback(None)
    (call,) = handlers.calls
    assert isinstance(call, GatewayCall)
    client.channel.connectionLost(Failure(ConnectionError("gone")))
    assert handlers.sent == 1
    assert client.observed[-1][:2] == ("/etcdserverpb.Lease/LeaseKeepAlive", StatusCode.CANCELLED)


def test_an_oversized_message_is_429_with_grpcs_words(handlers: Handlers) -> None:
    client = Client(handlers.registry, max_message=100)
    response = client.post("/v3/kv/range", {"key": base64.b64encode(b"x" * 120).decode()})
    assert response.status == 429
    assert response.json()["message"] == "grpc: received message larger than max (122 vs. 100)"
    response = client.request("POST", "/v3/kv/range", b" " * 201)
    assert response.status == 429
    assert response.json()["message"] == "gateway: request body larger than max (201 vs. 200)"
    assert client.post("/v3/kv/range", {"key": "eA=="}).status == 200


def test_shutdown_lets_calls_finish_then_ends_them_unavailable(client: Client, handlers: Handlers) -> None:
    client.send("POST", "/v3/kv/put", b"{}")
    stopped = Deferred.fromCoroutine(client.gateway.shutdown(5))
    refused = Client(handlers.registry)
    refused.gateway.draining = True
    assert refused.post("/v3/kv/range", {}).status == 503
    client.clock.advance(4.9)
    assert not stopped.called
    client.clock.advance(0.1)
    assert stopped.called
    response = client.response()
    assert response.status == 503 and response.json()["message"] == "the server is shutting down"


def test_failures_are_translated_as_the_method_registered_them() -> None:
    class Missing(Exception):
        pass

    async def missing(request: Any, call: Any) -> Any:
        raise Missing()

    class KV:
        range = put = delete_range = txn = compact = staticmethod(missing)

    registry = MethodRegistry()
    registry.add_service(rpc_pb2.DESCRIPTOR.services_by_name["KV"], KV(),
                         lambda error: GRPCError(StatusCode.NOT_FOUND, "translated") if isinstance(error, Missing) else None)
    response = Client(registry).post("/v3/kv/range", {"key": "YQ=="})
    assert response.status == 404 and response.json()["message"] == "translated"
