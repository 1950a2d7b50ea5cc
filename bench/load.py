"""A load generator for any etcd v3 endpoint: etcd-load's command line and RESULT line, in Python.

    python bench/load.py -endpoints 127.0.0.1:2379 -op put -clients 32 -conns 4 -total 8000
    python bench/load.py -op list -keyspace 10000 -limit 500 -total 200
    python bench/load.py -op watch -watchers 100 -total 1000

The same operations as the Go etcd-load tool (etcd's own client), so that ``bench/compare.py``
runs from the project alone: ``put`` and ``range`` of one key out of ``-keyspace``, ``txn-put``
(kube-apiserver's optimistic update: a get, then If(MOD(k) == rev) Then(Put) Else(Get), retried
on conflict), ``list`` (a prefix listed in pages pinned to the first page's revision, checked
whole) and ``watch`` (``-watchers`` watches with prev_kv on one prefix, ``-total`` puts one at a
time, each event's delay from its put measured and every stream checked for order and
completeness).  Clients are coroutines sharing ``-conns`` grpcio channels.  The last line is
machine-readable::

    RESULT op=put ops_per_s=... p50_ms=... p90_ms=... p99_ms=... max_ms=... errors=...

One Python process drives the load: on a small machine it measures its own limits as much as
the server's; etcd-load is the yardstick the performance targets are judged by.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import message_factory

from k8s_sql.proto import rpc_pb2

OPERATIONS = ("put", "range", "txn-put", "list", "watch")


class Client:
    """grpcio's asyncio stubs for KV and Watch on one channel."""

    def __init__(self, endpoint: str) -> None:
        self.channel = grpc.aio.insecure_channel(endpoint, options=[("grpc.max_receive_message_length", 1 << 26)])
        for name in ("KV", "Watch"):
            service = rpc_pb2.DESCRIPTOR.services_by_name[name]
            for method in service.methods:
                request = message_factory.GetMessageClass(method.input_type)
                response = message_factory.GetMessageClass(method.output_type)
                make = self.channel.stream_stream if method.client_streaming else self.channel.unary_unary
                stub = make(
                    f"/{service.full_name}/{method.name}",
                    request_serializer=request.SerializeToString,
                    response_deserializer=response.FromString,
                )
                setattr(self, method.name, stub)

    async def close(self) -> None:
        """Close the channel."""
        await self.channel.close()


@dataclass
class Result:
    """Latencies of the operations that succeeded, the errors, and the first error's text."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""

    def failed(self, error: BaseException | str) -> None:
        """Count an error, keeping the first one's text."""
        self.errors += 1
        self.first_error = self.first_error or str(error)


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """The ``fraction`` percentile of sorted seconds, in milliseconds (as etcd-load picks it)."""
    return ordered[int(fraction * (len(ordered) - 1))] * 1000 if ordered else 0.0


def report(op: str, result: Result, elapsed: float) -> None:
    """Print the summary and the RESULT line."""
    ordered = sorted(result.latencies)
    print(f"{op}: {len(ordered)} ok, {result.errors} errors in {elapsed:.2f}s")
    if result.first_error:
        print(f"first error: {result.first_error}")
    print(
        f"RESULT op={op} ops_per_s={len(ordered) / elapsed:.1f} p50_ms={percentile(ordered, 0.5):.2f} "
        f"p90_ms={percentile(ordered, 0.9):.2f} p99_ms={percentile(ordered, 0.99):.2f} "
        f"max_ms={percentile(ordered, 1.0):.2f} errors={result.errors}"
    )


class Load:
    """One run's settings and clients."""

    def __init__(self, args: argparse.Namespace, clients: list[Client]) -> None:
        self.args = args
        self.clients = clients
        self.value = b"v" * args.val_size
        self.timeout = args.timeout

    def key(self, number: int) -> bytes:
        """The key numbered ``number``: the prefix and the number, zero-padded to ``-key-size`` digits."""
        return (self.args.prefix + str(number % self.args.keyspace).zfill(self.args.key_size)).encode()

    def random_key(self) -> bytes:
        """One key of the keyspace, at random."""
        return self.key(random.randrange(self.args.keyspace))

    async def fill(self) -> None:
        """Write every key of the keyspace once."""
        client = self.clients[0]
        for number in range(self.args.keyspace):
            await client.Put(rpc_pb2.PutRequest(key=self.key(number), value=self.value), timeout=self.timeout)

    async def run(self, operation: Callable[[Client], Awaitable[None]]) -> tuple[Result, float]:
        """``-total`` operations from ``-clients`` coroutines; the result and the seconds taken."""
        result = Result()
        remaining = iter(range(self.args.total))

        async def worker(client: Client) -> None:
            for _ in remaining:
                started = time.perf_counter()
                try:
                    await operation(client)
                except (grpc.aio.AioRpcError, AssertionError) as e:
                    result.failed(e.details() if isinstance(e, grpc.aio.AioRpcError) else e)
                    continue
                result.latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        workers = [worker(self.clients[number % len(self.clients)]) for number in range(self.args.clients)]
        await asyncio.gather(*workers)
        return result, time.perf_counter() - started

    async def put(self, client: Client) -> None:
        """One put of a random key."""
        await client.Put(rpc_pb2.PutRequest(key=self.random_key(), value=self.value), timeout=self.timeout)

    async def range(self, client: Client) -> None:
        """One linearizable get of a random key, which must exist."""
        answer = await client.Range(rpc_pb2.RangeRequest(key=self.random_key()), timeout=self.timeout)
        assert len(answer.kvs) == 1, f"get returned {len(answer.kvs)} kvs"

    async def txn_put(self, client: Client) -> None:
        """kube-apiserver's GuaranteedUpdate of a random key, retried on conflict."""
        key = self.random_key()
        got = await client.Range(rpc_pb2.RangeRequest(key=key), timeout=self.timeout)
        revision = got.kvs[0].mod_revision if got.kvs else 0
        for _ in range(20):
            answer = await client.Txn(
                rpc_pb2.TxnRequest(
                    compare=[
                        rpc_pb2.Compare(
                            key=key, target=rpc_pb2.Compare.MOD, result=rpc_pb2.Compare.EQUAL, mod_revision=revision
                        )
                    ],
                    success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=self.value))],
                    failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key))],
                ),
                timeout=self.timeout,
            )
            if answer.succeeded:
                return
            kvs = answer.responses[0].response_range.kvs
            revision = kvs[0].mod_revision if kvs else 0
        raise AssertionError(f"txn-put: too many conflicts on {key!r}")

    async def list(self, client: Client) -> None:
        """The whole prefix in pages of ``-limit``, pinned to the first page's revision."""
        prefix = self.args.prefix.encode()
        end = prefix[:-1] + bytes([prefix[-1] + 1])
        start, revision, seen = prefix, 0, 0
        while True:
            request = rpc_pb2.RangeRequest(key=start, range_end=end, limit=self.args.limit, revision=revision)
            answer = await client.Range(request, timeout=self.timeout)
            revision = answer.header.revision
            seen += len(answer.kvs)
            if not answer.more:
                break
            start = answer.kvs[-1].key + b"\x00"
        assert seen == self.args.keyspace, f"list saw {seen} keys, want {self.args.keyspace}"

    async def watch(self) -> None:
        """Fan-out: every watcher must see every put, in order, once; each delay is measured."""
        prefix = (self.args.prefix + "watch/").encode()
        end = prefix[:-1] + bytes([prefix[-1] + 1])
        total = self.args.total
        first = (await self.clients[0].Range(rpc_pb2.RangeRequest(key=b"watch-start-probe"))).header.revision + 1
        sent: list[float] = [0.0] * total
        result = Result()
        request = rpc_pb2.WatchRequest(
            create_request=rpc_pb2.WatchCreateRequest(key=prefix, range_end=end, start_revision=first, prev_kv=True)
        )

        async def watcher(number: int, ready: asyncio.Event) -> None:
            done = asyncio.Event()

            async def requests() -> Any:
                yield request
                await done.wait()

            call = self.clients[number % len(self.clients)].Watch(requests())
            got, last = 0, 0
            async for answer in call:
                if answer.created:
                    ready.set()
                now = time.perf_counter()
                for event in answer.events:
                    if event.kv.mod_revision <= last:
                        result.failed(f"watcher {number}: revision {event.kv.mod_revision} after {last}")
                    last = event.kv.mod_revision
                    index = int(event.kv.key[len(prefix) :])
                    result.latencies.append(now - sent[index])
                    got += 1
                if got >= total:
                    break
            done.set()
            call.cancel()

        readies = [asyncio.Event() for _ in range(self.args.watchers)]
        watchers = [asyncio.create_task(watcher(number, ready)) for number, ready in enumerate(readies)]
        await asyncio.gather(*(ready.wait() for ready in readies))
        started = time.perf_counter()
        for index in range(total):
            sent[index] = time.perf_counter()
            key = prefix + str(index).encode()
            await self.clients[0].Put(rpc_pb2.PutRequest(key=key, value=self.value), timeout=self.timeout)
        try:
            await asyncio.wait_for(asyncio.gather(*watchers), timeout=30.0)
        except TimeoutError:
            result.failed("watchers did not receive every event within 30s")
        wanted = total * self.args.watchers
        if len(result.latencies) != wanted:
            print(f"delivered {len(result.latencies)} of {wanted} events")
            result.errors = result.errors or wanted - len(result.latencies)
        report(f"watch-{self.args.watchers}x", result, time.perf_counter() - started)


async def main(args: argparse.Namespace) -> None:
    """Run the operation the command line names."""
    clients = [Client(endpoint) for endpoint in args.endpoints.split(",") for _ in range(args.conns)][: args.conns]
    load = Load(args, clients)
    try:
        if args.op == "watch":
            await load.watch()
            return
        if args.op != "put":
            await load.fill()
        operation = {"put": load.put, "range": load.range, "txn-put": load.txn_put, "list": load.list}[args.op]
        result, elapsed = await load.run(operation)
        report(args.op, result, elapsed)
    finally:
        for client in clients:
            await client.close()


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """etcd-load's flags (one dash or two)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-endpoints", "--endpoints", default="127.0.0.1:2379")
    parser.add_argument("-op", "--op", default="put", choices=OPERATIONS)
    parser.add_argument("-clients", "--clients", type=int, default=32)
    parser.add_argument("-conns", "--conns", type=int, default=4)
    parser.add_argument("-total", "--total", type=int, default=10000)
    parser.add_argument("-key-size", "--key-size", dest="key_size", type=int, default=16)
    parser.add_argument("-val-size", "--val-size", dest="val_size", type=int, default=256)
    parser.add_argument("-keyspace", "--keyspace", type=int, default=1000)
    parser.add_argument("-limit", "--limit", type=int, default=500)
    parser.add_argument("-watchers", "--watchers", type=int, default=100)
    parser.add_argument("-prefix", "--prefix", default="/bench/")
    parser.add_argument("-timeout", "--timeout", type=float, default=10.0, help="seconds per request")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
