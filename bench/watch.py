"""Watch fan-out benchmark: N watchers × M writes, k8s-sql on each backend against a real etcd.

    python bench/watch.py                          # SQLite, then etcd
    python bench/watch.py --backend sqlite --backend postgres://postgres@127.0.0.1/postgres \\
        --backend mysql://root@127.0.0.1/test --watchers 1 100 1000 --connections 4
    python bench/watch.py --no-etcd --profile /tmp/watch-profiles

For each server and each N of ``--watchers``: open min(N, ``--connections``) connections,
each from a client process of its own with one Watch stream, and create N watches in all
on the prefix ``/registry/bench-watch/`` (with ``prev_kv`` and ``progress_notify``, as
kube-apiserver asks).  Then, through one more connection, Put ``--writes`` values of
``--value-size`` bytes under the prefix, twice:

- ``rate``: ``--rate`` writes per second, open loop (each write is sent on time whether or
  not the previous ones were acknowledged);
- ``max``: as fast as the server takes them, ``--concurrency`` writes in flight.

Every watch receives every write.  An event's delivery latency is the time from just
before its write was sent (and, second figure, from the write's acknowledgement) to its
receipt by the watcher's process; events per second are the events received by all
watchers over the time from the first write sent to the last event received.  CPU time
is read from /proc: the servers' and the database server's per event delivered, the client
processes' and, to show how busy the machine was with other work, everybody else's.

Then, for each k8s-sql backend, two servers share one database (``--cross-watchers``
watchers on one, the writes through the other): their events arrive by polling every
``--poll-interval``, or at once by LISTEN/NOTIFY on PostgreSQL.

MariaDB/PostgreSQL URLs name a server and a database to connect to for administration:
each run creates a scratch database there and drops it afterwards.  ``--profile DIR``
runs every k8s-sql server under cProfile and leaves its statistics in DIR.

``--inprocess`` measures instead the server's own work per delivered response, without
sockets, clients or database, so that the figure does not depend on the machine's load:
the watch service, hub and follower over an in-memory log, the watches' streams either on
calls whose ``send`` costs nothing (the watch layer alone) or on the real gRPC stack over
``StringTransport`` (with a client window so large that flow control never waits).  It
prints CPU microseconds and Python function calls (from cProfile) per watch and revision.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import multiprocessing
import os
import pstats
import queue
import struct
import sys
import tempfile
import threading
import time
import uuid
from array import array
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import grpc
from twisted.internet.defer import Deferred, ensureDeferred, succeed

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
from k8s_sql.etcd.services import register
from k8s_sql.proto import rpc_pb2  # noqa: E402
from tests.processes import ETCD, Etcd, K8sSQL  # noqa: E402
from tests.watch.doubles import MemoryLog  # noqa: E402

PREFIX = b"/registry/bench-watch/"
PREFIX_END = b"/registry/bench-watch0"
WATCH = "/etcdserverpb.Watch/Watch"
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    # Every channel its own TCP connection, even to the same address.
    ("grpc.use_local_subchannel_pool", 1),
]


def now() -> float:
    """CLOCK_MONOTONIC: one clock for every process of the machine."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


# -- the watching side: one process per connection


class Recorder:
    """Receipt times and revisions of the events one Watch stream receives."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.times = array("d")
        self.revisions = array("q")
        self.expected: int | None = None
        self.done = threading.Event()

    def arm(self, expected: int) -> None:
        """Start afresh, done once ``expected`` events have arrived."""
        with self._lock:
            self.times, self.revisions = array("d"), array("q")
            self.expected = expected
            self.done.clear()

    def received(self) -> int:
        """Events received since ``arm``."""
        with self._lock:
            return len(self.times)

    def take(self) -> tuple[array[float], array[int]]:
        """The receipt times and revisions recorded since ``arm``; stop expecting."""
        with self._lock:
            self.expected = None
            return self.times, self.revisions

    def run(self, responses: Iterable[rpc_pb2.WatchResponse]) -> None:
        """Record every event of ``responses`` until the stream ends."""
        try:
            for response in responses:
                received = now()
                with self._lock:
                    for event in response.events:
                        self.times.append(received)
                        self.revisions.append(event.kv.mod_revision)
                    if self.expected is not None and len(self.times) >= self.expected:
                        self.done.set()
        except grpc.RpcError:
            pass
        finally:
            self.done.set()


def watch_connection(endpoint: str, watches: int, control: Connection) -> None:
    """A client process: one connection, one Watch stream with ``watches`` prefix watches.

    It answers ``("arm", expected)`` with ``"armed"`` and ``("collect", stall)`` with the
    ``(times, revisions, cpu seconds)`` of the events received since, once ``expected``
    arrived or none arrived for ``stall`` seconds; ``None`` ends it.
    """
    channel = grpc.insecure_channel(endpoint, options=CHANNEL_OPTIONS)
    requests: queue.SimpleQueue[rpc_pb2.WatchRequest | None] = queue.SimpleQueue()
    call = channel.stream_stream(
        WATCH,
        request_serializer=rpc_pb2.WatchRequest.SerializeToString,
        response_deserializer=rpc_pb2.WatchResponse.FromString,
    )
    responses = call(iter(requests.get, None))
    create = rpc_pb2.WatchCreateRequest(key=PREFIX, range_end=PREFIX_END, prev_kv=True, progress_notify=True)
    for _ in range(watches):
        requests.put(rpc_pb2.WatchRequest(create_request=create))
    created = 0
    while created < watches:
        response = next(responses)
        if response.canceled or not response.created:
            raise RuntimeError(f"unexpected response while creating watches: {response}")
        created += 1
    recorder = Recorder()
    threading.Thread(target=recorder.run, args=(responses,), daemon=True).start()
    control.send("ready")
    cpu = own_cpu_seconds()
    while (command := control.recv()) is not None:
        if command[0] == "arm":
            recorder.arm(command[1])
            cpu = own_cpu_seconds()
            control.send("armed")
        else:
            stall = command[1]
            last, quiet_since = -1, now()
            while not recorder.done.wait(0.2):
                count = recorder.received()
                if count != last:
                    last, quiet_since = count, now()
                elif now() - quiet_since > stall:
                    break
            times, revisions = recorder.take()
            control.send((times.tobytes(), revisions.tobytes(), own_cpu_seconds() - cpu))
    requests.put(None)
    responses.cancel()
    channel.close()


class Watchers:
    """N watches spread over client processes, one connection and one stream each."""

    def __init__(self, endpoint: str, watches: int, connections: int) -> None:
        context = multiprocessing.get_context("spawn")
        count = min(watches, connections)
        self.shares = [watches // count + (index < watches % count) for index in range(count)]
        self.controls: list[Connection] = []
        self.processes = []
        for share in self.shares:
            ours, theirs = context.Pipe()
            process = context.Process(target=watch_connection, args=(endpoint, share, theirs), daemon=True)
            process.start()
            self.controls.append(ours)
            self.processes.append(process)
        for control in self.controls:
            self._expect(control, "ready", 120)

    @staticmethod
    def _expect(control: Connection, answer: str, timeout: float) -> None:
        if not control.poll(timeout) or control.recv() != answer:
            raise RuntimeError(f"a watcher process did not answer {answer!r}")

    def arm(self, writes: int) -> None:
        """Expect ``writes`` events on every watch."""
        for control, share in zip(self.controls, self.shares):
            control.send(("arm", share * writes))
        for control in self.controls:
            self._expect(control, "armed", 30)

    def collect(self, stall: float) -> tuple[array[float], array[int], float]:
        """Receipt times and revisions of every event received since ``arm``, and client CPU."""
        for control in self.controls:
            control.send(("collect", stall))
        times, revisions, cpu = array("d"), array("q"), 0.0
        for control in self.controls:
            received_times, received_revisions, used = control.recv()
            times.frombytes(received_times)
            revisions.frombytes(received_revisions)
            cpu += used
        return times, revisions, cpu

    def close(self) -> None:
        """End the client processes."""
        for control in self.controls:
            control.send(None)
        for process in self.processes:
            process.join(30)
            if process.is_alive():
                process.kill()


# -- the writing side


def key(index: int) -> bytes:
    """The key of the ``index``-th write: 1,000 keys under the watched prefix."""
    return PREFIX + b"ns-%02d/object-%05d" % (index % 10, index % 1000)


async def write(endpoint: str, writes: int, value: bytes, rate: float | None, concurrency: int) -> list[tuple[float, float, int]]:
    """Put ``writes`` keys; each write's (sent, acknowledged, revision)."""
    async with grpc.aio.insecure_channel(endpoint, options=CHANNEL_OPTIONS) as channel:
        put = channel.unary_unary(
            "/etcdserverpb.KV/Put",
            request_serializer=rpc_pb2.PutRequest.SerializeToString,
            response_deserializer=rpc_pb2.PutResponse.FromString,
        )
        get = channel.unary_unary(
            "/etcdserverpb.KV/Range",
            request_serializer=rpc_pb2.RangeRequest.SerializeToString,
            response_deserializer=rpc_pb2.RangeResponse.FromString,
        )
        await get(rpc_pb2.RangeRequest(key=b"/bench-warm-up"))  # connect before the clock starts
        records: list[tuple[float, float, int]] = []

        async def one(index: int) -> None:
            sent = now()
            response = await put(rpc_pb2.PutRequest(key=key(index), value=value))
            records.append((sent, now(), response.header.revision))

        if rate:
            start = now()
            tasks = []
            for index in range(writes):
                delay = start + index / rate - now()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.ensure_future(one(index)))
            await asyncio.gather(*tasks)
        else:
            counter = iter(range(writes))

            async def worker() -> None:
                for index in counter:
                    await one(index)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return records


# -- servers


@dataclass
class Deployment:
    """Where to watch and where to write, and the processes whose CPU counts."""

    label: str
    watch_endpoint: str
    write_endpoint: str
    pids: list[int]
    database_pids: list[int]

    def cpu(self) -> tuple[float, float]:
        """CPU seconds used so far by the servers, and by the database server."""
        return sum(map(cpu_seconds, self.pids)), sum(map(cpu_seconds, self.database_pids))


@contextmanager
def k8s_sql(backend: str, servers: int, args: argparse.Namespace, scratch: str) -> Iterator[Deployment]:
    """``servers`` k8s-sql processes on one scratch database: watched through the first,
    written through the last."""
    label = backend_name(backend)
    name = label if servers == 1 else f"{label} ×{servers}"
    with scratch_database(backend, scratch) as url, ExitStack() as stack:
        processes = []
        for number in range(servers):
            options: tuple[str, ...] = ()
            if args.profile:
                path = Path(args.profile, f"{label}-{servers}-servers-{number}-{uuid.uuid4().hex[:6]}.prof")
                options = ("-m", "cProfile", "-o", str(path))
            server = K8sSQL(
                url, "--poll-interval", args.poll_interval, "--name", f"server-{number}", python_options=options
            )
            processes.append(stack.enter_context(server))
        yield Deployment(
            name,
            processes[0].endpoint,
            processes[-1].endpoint,
            [p.process.pid for p in processes],
            pids_of(DATABASE_COMMANDS.get(label, ())),
        )


@contextmanager
def etcd() -> Iterator[Deployment]:
    """A real etcd 3.5 on this machine."""
    with Etcd("--quota-backend-bytes", str(8 * 1024**3)) as server:
        yield Deployment("etcd", server.endpoint, server.endpoint, [server.process.pid], [])


# -- in-process: the server's own cost per response


class NullCall:
    """A Watch call whose ``send`` costs nothing: the watch layer's share alone."""

    method = WATCH
    metadata: tuple[tuple[str, str | bytes], ...] = ()
    peer = None
    deadline = None

    def __init__(self, requests: list[rpc_pb2.WatchRequest]) -> None:
        self._requests = requests

    def receive(self) -> Deferred[rpc_pb2.WatchRequest | None]:
        """The create requests, then nothing: the client neither cancels nor half-closes."""
        return succeed(self._requests.pop(0)) if self._requests else Deferred()

    def send(self, message: bytes) -> Deferred[None]:
        """Take ``message`` at once."""
        return succeed(None)

    def set_trailing_metadata(self, metadata: object) -> None:
        """Trailers are never sent: the call does not end."""


def serve_in_process(streams: Sequence[int], grpc_stack: bool) -> tuple[MemoryLog, Callable[[], None]]:
    """Watch streams with ``streams[i]`` prefix watches each, over an in-memory log; the
    log, and what discards the bytes sent so far."""
    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from h2.settings import SettingCodes
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    from k8s_sql.etcd.header import Identity
    from k8s_sql.etcd.watch import WatchService
    from k8s_sql.grpc.protocol import GRPCServerFactory
    from k8s_sql.grpc.registry import MethodRegistry
    from k8s_sql.watch.follower import Follower
    from k8s_sql.watch.hub import WatchHub

    clock = Clock()
    log = MemoryLog()
    hub = WatchHub()
    follower = Follower(log, hub, clock)
    follower.startService()
    service = WatchService(hub, log, follower, Identity(1, 2), clock)
    create = rpc_pb2.WatchRequest(
        create_request=rpc_pb2.WatchCreateRequest(key=PREFIX, range_end=PREFIX_END, prev_kv=True, progress_notify=True)
    )
    transports: list[StringTransport] = []
    if not grpc_stack:
        for count in streams:
            ensureDeferred(service.watch(NullCall([create] * count)))
    else:
        registry = MethodRegistry()
        register(registry, service)
        factory = GRPCServerFactory(registry, clock)
        payload = create.SerializeToString()
        framed = struct.pack(">BI", 0, len(payload)) + payload
        for count in streams:
            protocol = factory.buildProtocol(None)
            transport = StringTransport()
            protocol.makeConnection(transport)
            client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
            client.initiate_connection()
            client.receive_data(transport.value())
            client.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
            client.increment_flow_control_window(2**31 - 1 - 65535)
            stream_id = client.get_next_available_stream_id()
            headers = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", WATCH.encode()),
                       (b":authority", b"127.0.0.1"), (b"te", b"trailers"), (b"content-type", b"application/grpc")]
            client.send_headers(stream_id, headers)
            client.send_data(stream_id, framed * count)
            protocol.dataReceived(client.data_to_send())
            transports.append(transport)
    assert len(hub) == sum(streams), "every watch is created at once"

    def discard() -> None:
        clock.advance(0)  # the end of the reactor turn, when calls send what they queued
        for transport in transports:
            transport.clear()

    return log, discard


def in_process(watchers: int, connections: int, writes: int, value_size: int, grpc_stack: bool) -> tuple[float, float]:
    """CPU microseconds and Python function calls per (watch, revision) delivered."""
    count = min(watchers, connections)
    streams = [watchers // count + (index < watchers % count) for index in range(count)]
    value = b"v" * value_size

    def run(profile: cProfile.Profile | None) -> float:
        log, discard = serve_in_process(streams, grpc_stack)
        discard()
        if profile is not None:
            profile.enable()
        began = time.process_time()
        for index in range(writes):
            log.write((key(index), value))
            discard()
        elapsed = time.process_time() - began
        if profile is not None:
            profile.disable()
        return elapsed

    best = min(run(None) for _ in range(3))
    profile = cProfile.Profile()
    run(profile)
    responses = watchers * writes
    return best / responses * 1e6, pstats.Stats(profile).total_calls / responses


# -- measuring


@dataclass
class Result:
    """One phase: N watchers, M writes at one rate, on one deployment."""

    server: str
    watchers: int
    connections: int
    mode: str
    writes: int
    write_seconds: float
    seconds: float
    expected: int
    delivered: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    ack_p50_ms: float
    ack_p99_ms: float
    server_cpu_s: float
    database_cpu_s: float
    client_cpu_s: float
    #: CPU seconds of the machine's other processes meanwhile (other work, not this benchmark).
    other_cpu_s: float

    @property
    def writes_per_second(self) -> float:
        """Writes acknowledged per second."""
        return self.writes / self.write_seconds

    @property
    def events_per_second(self) -> float:
        """Events received by all watchers per second."""
        return self.delivered / self.seconds if self.seconds > 0 else 0.0

    @property
    def client_cpu_share(self) -> float:
        """The client processes' CPU time over the phase's duration (1.0: one core)."""
        return self.client_cpu_s / self.seconds if self.seconds > 0 else 0.0

    @property
    def server_us_per_event(self) -> float:
        """CPU microseconds of the servers (k8s-sql or etcd) per event delivered."""
        return self.server_cpu_s / max(self.delivered, 1) * 1e6

    @property
    def database_us_per_event(self) -> float:
        """CPU microseconds of the database server per event delivered."""
        return self.database_cpu_s / max(self.delivered, 1) * 1e6

    @property
    def other_cpu_share(self) -> float:
        """Other processes' CPU time over the phase's duration (1.0: one core)."""
        return self.other_cpu_s / self.seconds if self.seconds > 0 else 0.0


def phase(deployment: Deployment, watchers: Watchers, mode: str, args: argparse.Namespace, value: bytes) -> Result:
    """Write ``--writes`` values in ``mode`` and measure their delivery to every watch."""
    rate = args.rate if mode == "rate" else None
    watchers.arm(args.writes)
    (server_cpu, database_cpu), writer_cpu, busy = deployment.cpu(), own_cpu_seconds(), machine_busy_seconds()
    records = asyncio.run(write(deployment.write_endpoint, args.writes, value, rate, args.concurrency))
    times, revisions, client_cpu = watchers.collect(args.stall)
    server_after, database_after = deployment.cpu()
    server_cpu, database_cpu = server_after - server_cpu, database_after - database_cpu
    writer_cpu = own_cpu_seconds() - writer_cpu
    busy = machine_busy_seconds() - busy
    written = {revision: (sent, acked) for sent, acked, revision in records}
    first_sent = min(sent for sent, _, _ in records)
    from_sent, from_ack = [], []
    for received, revision in zip(times, revisions):
        # Stragglers of an earlier phase that gave up (``--stall``) are not this phase's.
        if revision in written:
            sent, acked = written[revision]
            from_sent.append(received - sent)
            from_ack.append(received - acked)
    from_sent.sort()
    from_ack.sort()
    return Result(
        server=deployment.label,
        watchers=sum(watchers.shares),
        connections=len(watchers.shares),
        mode=mode if rate is None else f"{rate:g}/s",
        writes=args.writes,
        write_seconds=max(acked for _, acked, _ in records) - first_sent,
        seconds=max(times, default=first_sent) - first_sent,
        expected=sum(watchers.shares) * args.writes,
        delivered=len(from_sent),
        p50_ms=quantile(from_sent, 0.50),
        p99_ms=quantile(from_sent, 0.99),
        max_ms=from_sent[-1] * 1000 if from_sent else float("nan"),
        ack_p50_ms=quantile(from_ack, 0.50),
        ack_p99_ms=quantile(from_ack, 0.99),
        server_cpu_s=server_cpu,
        database_cpu_s=database_cpu,
        client_cpu_s=client_cpu,
        other_cpu_s=max(0.0, busy - server_cpu - database_cpu - client_cpu - writer_cpu),
    )


def measure(deployment: Deployment, counts: Sequence[int], args: argparse.Namespace) -> list[Result]:
    """Every phase for every watcher count on one deployment."""
    value = os.urandom(args.value_size // 2).hex().encode()
    results = []
    for count in counts:
        watchers = Watchers(deployment.watch_endpoint, count, args.connections)
        try:
            for mode in args.modes:
                result = phase(deployment, watchers, mode, args, value)
                print(line(result), file=sys.stderr, flush=True)
                results.append(result)
        finally:
            watchers.close()
    return results


def line(r: Result) -> str:
    """One phase's figures on one line, as they come."""
    return (
        f"{r.server:>12} {r.watchers:5d} watchers/{r.connections} conns {r.mode:>6}: "
        f"{r.writes_per_second:5.0f} writes/s {r.events_per_second:6.0f} events/s  "
        f"p50 {r.p50_ms:7.1f} p99 {r.p99_ms:7.1f} ms (after ack {r.ack_p50_ms:7.1f} {r.ack_p99_ms:7.1f})  "
        f"µs/event: server {r.server_us_per_event:4.0f} db {r.database_us_per_event:3.0f}  "
        f"CPU: client {r.client_cpu_share:4.0%} others {r.other_cpu_share:4.0%}  {r.delivered}/{r.expected} events"
    )


def table(results: Sequence[Result]) -> str:
    """Every phase's figures as a Markdown table."""
    rows = [
        "| server | watchers | conns | writes | writes/s | events/s | p50 ms | p99 ms | p50 after ack | p99 after ack "
        "| server CPU µs/event | database CPU µs/event | client CPU | others' CPU | delivered |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rows.append(
            f"| {r.server} | {r.watchers} | {r.connections} | {r.writes} {r.mode} | {r.writes_per_second:.0f} "
            f"| {r.events_per_second:.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.ack_p50_ms:.1f} | {r.ack_p99_ms:.1f} "
            f"| {r.server_us_per_event:.0f} | {r.database_us_per_event:.0f} | {r.client_cpu_share:.0%} "
            f"| {r.other_cpu_share:.0%} | {r.delivered}/{r.expected} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", action="append", help="sqlite, or a mysql:// or postgres:// URL (repeatable)")
    parser.add_argument("--watchers", type=int, nargs="*", default=[1, 100, 1000], help="watcher counts (none: only --cross-watchers)")
    parser.add_argument("--connections", type=int, default=4, help="watch connections at most")
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="writes per second of the rate phase")
    parser.add_argument("--concurrency", type=int, default=16, help="writes in flight in the max phase")
    parser.add_argument("--modes", nargs="+", choices=["rate", "max"], default=["rate", "max"])
    parser.add_argument("--value-size", type=int, default=1024)
    parser.add_argument("--cross-watchers", type=int, nargs="*", default=[100],
                        help="watcher counts with two k8s-sql servers on one database (none: skip)")
    parser.add_argument("--poll-interval", default="1s", help="k8s-sql's --poll-interval")
    parser.add_argument("--stall", type=float, default=15.0, help="give up on events after this many quiet seconds")
    parser.add_argument("--no-etcd", action="store_true", help="do not measure a real etcd")
    parser.add_argument("--profile", help="run k8s-sql under cProfile, statistics in this directory")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    parser.add_argument("--inprocess", action="store_true", help="the server's own cost per response (see above)")
    args = parser.parse_args()
    if args.inprocess:
        print("| watchers | conns | layers | CPU µs per watch and revision | Python calls per watch and revision |\n"
              "|---|---|---|---|---|")
        for watchers in args.watchers:
            for grpc_stack in (False, True):
                cpu, calls = in_process(watchers, args.connections, args.writes, args.value_size, grpc_stack)
                layers = "watch + gRPC" if grpc_stack else "watch"
                print(f"| {watchers} | {min(watchers, args.connections)} | {layers} | {cpu:.1f} | {calls:.1f} |", flush=True)
        return
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="k8s-sql-bench-") as scratch:
        for backend in args.backend or ["sqlite"]:
            with k8s_sql(backend, 1, args, scratch) as deployment:
                results += measure(deployment, args.watchers, args)
            if args.cross_watchers:
                with k8s_sql(backend, 2, args, scratch) as deployment:
                    results += measure(deployment, args.cross_watchers, args)
        if not args.no_etcd and Path(ETCD).exists():
            with etcd() as deployment:
                results += measure(deployment, args.watchers, args)
    if args.json:
        print(json.dumps([asdict(r) | {"writes_per_second": r.writes_per_second, "events_per_second": r.events_per_second}
                          for r in results], indent=2))
    else:
        print(table(results))


if __name__ == "__main__":
    main()
