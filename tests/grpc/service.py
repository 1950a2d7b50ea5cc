"""The small gRPC service the transport tests call, with counters the tests read back.

Messages are raw bytes (identity codecs), except Health which uses protobuf.
"""

from __future__ import annotations

import gc
import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from k8s_sql.grpc.health import HealthService
from k8s_sql.grpc.interfaces import IServerCall
from k8s_sql.grpc.protocol import GRPCProtocol, GRPCServerFactory
from k8s_sql.grpc.registry import CallKind, MethodRegistry
from k8s_sql.grpc.status import GRPCError, StatusCode
from k8s_sql.grpc.stream import ServerCall

SERVICE = "/test.Test/"


def identity(data: bytes) -> bytes:
    return data


def live_objects() -> dict[str, int]:
    """How many protocol and call objects are alive, after a full collection."""
    gc.collect()
    counts = {"protocols": 0, "calls": 0}
    for obj in gc.get_objects():
        if isinstance(obj, GRPCProtocol):
            counts["protocols"] += 1
        elif isinstance(obj, ServerCall):
            counts["calls"] += 1
    return counts


class TestService:
    """Echo, streams, hangs and counters."""

    __test__ = False  # not a pytest class

    def __init__(self) -> None:
        self.factory: GRPCServerFactory | None = None
        self.cancelled = 0
        self.started = 0
        self.sent = 0
        self.max_buffered = 0
        self.max_open_calls = 0
        self.hanging: list[Deferred[None]] = []
        self._gathering: list[Deferred[None]] = []

    def registry(self) -> MethodRegistry:
        registry = MethodRegistry()
        for name in ("Echo", "Fail", "Crash", "Hang", "Gather", "Metadata", "Stats", "Plain", "Late", "Sleep"):
            registry.add(SERVICE + name, CallKind.UNARY, getattr(self, name.lower()), identity, identity)
        registry.add(SERVICE + "Count", CallKind.SERVER_STREAM, self.count, identity, identity)
        registry.add(SERVICE + "HangStream", CallKind.SERVER_STREAM, self.hang_stream, identity, identity)
        registry.add(SERVICE + "Collect", CallKind.CLIENT_STREAM, self.collect, identity, identity)
        registry.add(SERVICE + "Idle", CallKind.CLIENT_STREAM, self.idle, identity, identity)
        registry.add(SERVICE + "Chat", CallKind.BIDI, self.chat, identity, identity)
        health = HealthService()
        registry.add_service(health.descriptor, health)
        return registry

    async def echo(self, request: bytes, call: IServerCall) -> bytes:
        return request

    def plain(self, request: bytes, call: IServerCall) -> bytes:
        """A plain function, not a coroutine."""
        return request[::-1]

    def late(self, request: bytes, call: IServerCall) -> Deferred[bytes]:
        """A plain function returning a Deferred that fires later (from the test)."""
        result: Deferred[bytes] = Deferred()
        self.hanging.append(result)  # type: ignore[arg-type]
        return result

    async def fail(self, request: bytes, call: IServerCall) -> bytes:
        code, _, message = request.decode().partition(":")
        raise GRPCError(StatusCode(int(code)), message)

    async def crash(self, request: bytes, call: IServerCall) -> bytes:
        raise ValueError("boom")

    async def hang(self, request: bytes, call: IServerCall) -> bytes:
        self.started += 1
        waiting: Deferred[None] = Deferred()
        self.hanging.append(waiting)
        try:
            await waiting
        except BaseException:
            self.cancelled += 1
            raise
        finally:
            self.hanging.remove(waiting)
        return request

    async def sleep(self, request: bytes, call: IServerCall) -> bytes:
        """Answer after ``request`` seconds."""
        assert self.factory is not None
        await deferLater(self.factory.reactor, float(request))
        return request

    async def hang_stream(self, request: bytes, call: IServerCall) -> None:
        await call.send(b"first")
        await self.hang(request, call)

    async def gather(self, request: bytes, call: IServerCall) -> bytes:
        """Wait until ``request`` calls are waiting here at once, then all answer."""
        wanted = int(request)
        waiting: Deferred[None] = Deferred()
        self._gathering.append(waiting)
        assert self.factory is not None
        self.max_open_calls = max(self.max_open_calls, self.factory.open_calls)
        if len(self._gathering) >= wanted:
            gathered, self._gathering = self._gathering, []
            for each in gathered:
                each.callback(None)
        await waiting
        return request

    async def metadata(self, request: bytes, call: IServerCall) -> bytes:
        call.set_trailing_metadata([("x-trailer", "yes"), ("x-blob-bin", b"\x00\x01\xff")])
        pairs = [[name, value.hex() if isinstance(value, bytes) else value] for name, value in call.metadata]
        return json.dumps({"metadata": pairs, "method": call.method, "deadline": call.deadline}).encode()

    async def stats(self, request: bytes, call: IServerCall) -> bytes:
        assert self.factory is not None
        return json.dumps({
            "cancelled": self.cancelled,
            "started": self.started,
            "sent": self.sent,
            "max_buffered": self.max_buffered,
            "max_open_calls": self.max_open_calls,
            "open_calls": self.factory.open_calls,
            "connections": len(self.factory.connections),
            **(live_objects() if request == b"objects" else {}),
        }).encode()

    async def count(self, request: bytes, call: IServerCall) -> None:
        """Send ``n`` messages of ``size`` bytes (request ``n`` or ``n:size``)."""
        n, _, size = request.decode().partition(":")
        payload = b"x" * int(size or 0)
        self.sent = 0
        for i in range(int(n)):
            await call.send(payload or str(i).encode())
            self.sent += 1
            self.max_buffered = max(self.max_buffered, call.buffered)  # type: ignore[attr-defined]

    async def collect(self, call: IServerCall) -> bytes:
        received = []
        while (message := await call.receive()) is not None:
            received.append(message)
        return b"%d:%d" % (len(received), sum(map(len, received)))

    async def idle(self, call: IServerCall) -> bytes:
        """A client-streaming handler that never reads."""
        return await self.hang(b"", call)

    async def chat(self, call: IServerCall) -> None:
        while (message := await call.receive()) is not None:
            await call.send(message)


def make_factory(reactor: Any, **options: Any) -> tuple[GRPCServerFactory, TestService]:
    """A server factory for the test service."""
    service = TestService()
    factory = GRPCServerFactory(service.registry(), reactor, **options)
    service.factory = factory
    return factory, service
