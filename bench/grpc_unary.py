"""Unary calls per second through the gRPC stack, on one connection, with the grpcio client.

    python bench/grpc_unary.py [--seconds 5] [--concurrency 1 64] [--size 100] [--profile FILE]

Starts a server process with an echo method (k8s_sql.grpc only, no etcd, no database),
then, for each concurrency level, keeps that many calls in flight on one channel for
``--seconds`` and prints calls per second and the median latency.  With ``--profile``
the server runs under cProfile and writes its statistics to FILE when it stops.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ECHO = "/bench.Bench/Echo"


def serve(profile: str | None) -> None:
    """The server side: echo on 127.0.0.1, port printed on stdout; SIGTERM stops it."""
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint

    from k8s_sql.grpc.protocol import GRPCServerFactory
    from k8s_sql.grpc.registry import CallKind, MethodRegistry

    def identity(data: bytes) -> bytes:
        return data

    async def echo(request: bytes, call: object) -> bytes:
        return request

    registry = MethodRegistry()
    registry.add(ECHO, CallKind.UNARY, echo, identity, identity)
    factory = GRPCServerFactory(registry, reactor)
    endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
    endpoint.listen(factory).addCallback(lambda port: print(f"PORT {port.getHost().port}", flush=True))
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    reactor.run()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)


def measure(address: str, concurrency: int, seconds: float, size: int) -> tuple[float, float]:
    """Keep ``concurrency`` calls in flight for ``seconds``; return calls/s and median latency (ms)."""
    import grpc

    payload = b"x" * size
    latencies: list[float] = []
    lock = threading.RLock()
    with grpc.insecure_channel(address) as channel:
        echo = channel.unary_unary(ECHO)
        echo(payload, timeout=10)  # connect and warm up
        deadline = time.perf_counter() + seconds
        done = threading.Event()
        in_flight = [0]

        def start() -> None:
            began = time.perf_counter()
            future = echo.future(payload, timeout=10)

            def finished(_: object) -> None:
                latency = time.perf_counter() - began
                with lock:
                    latencies.append(latency)
                    if time.perf_counter() < deadline:
                        start()
                    else:
                        in_flight[0] -= 1
                        if not in_flight[0]:
                            done.set()

            future.add_done_callback(finished)

        began = time.perf_counter()
        with lock:
            in_flight[0] = concurrency
            for _ in range(concurrency):
                start()
        done.wait(seconds + 30)
        elapsed = time.perf_counter() - began
    return len(latencies) / elapsed, statistics.median(latencies) * 1000


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time used so far by process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--size", type=int, default=100, help="request and response bytes")
    parser.add_argument("--profile", help="write the server's cProfile statistics here")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        serve(options.profile)
        return
    command = [sys.executable, __file__, "--serve"]
    if options.profile:
        command += ["--profile", os.path.abspath(options.profile)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        port = int(server.stdout.readline().split()[1])
        for concurrency in options.concurrency:
            cpu = cpu_seconds(server.pid)
            rate, median = measure(f"127.0.0.1:{port}", concurrency, options.seconds, options.size)
            cpu = cpu_seconds(server.pid) - cpu
            print(
                f"concurrency {concurrency:4d}: {rate:8.0f} calls/s, median latency {median:.2f} ms, "
                f"server CPU {cpu / (rate * options.seconds) * 1e6:.0f} us/call",
                flush=True,
            )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


if __name__ == "__main__":
    main()
