"""Cross-server watch latency: a watch on one k8s-sql, writes through another on the same database.

    python bench/peers.py                                # SQLite
    python bench/peers.py --backend sqlite --backend mysql://root@127.0.0.1/test \\
        --backend postgres://postgres@127.0.0.1/postgres --writes 200 --rate 20

For each ``--backend``, three times: two k8s-sql servers share a scratch database, one
watched (a prefix watch, as kube-apiserver's watch cache has), the other written through:
``--writes`` Puts of ``--value-size`` bytes at ``--rate`` per second, open loop (each sent
on time whether or not the previous ones were answered).

- ``peer signals``: both servers have a peer port (``--peer-listen``), so the writer signals
  each commit to the watched server at once;
- ``polling``: no peer port: the watched server learns of the writes by polling every
  ``--poll-interval`` (or, on PostgreSQL, by LISTEN/NOTIFY);
- ``one server``: for comparison, the writes go through the watched server itself.

An event's latency is the time from just before its Put was sent to its arrival at the
watching client; the figures are its p50, p99 and maximum, in milliseconds, and how many
events arrived (all of them, in revision order, or the run fails).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import backend_name, quantile, scratch_database  # noqa: E402
from k8s_sql.proto import rpc_pb2  # noqa: E402
from tests.etcdclient import EtcdClient  # noqa: E402
from tests.processes import K8sSQL  # noqa: E402
from tests.watch.servers import WatchSession  # noqa: E402

PREFIX = b"/registry/bench-peers/"


MODES = ("peer signals", "polling", "one server")


def measure(url: str, mode: str, args: argparse.Namespace) -> list[float]:
    """Event latencies, in seconds, of ``args.writes`` Puts through one server watched on the other
    (or, in ``one server`` mode, on itself)."""
    options = ["--poll-interval", args.poll_interval]
    if mode == "peer signals":
        options += ["--peer-listen", "tcp:0:interface=127.0.0.1"]
    with ExitStack() as stack:
        watched = stack.enter_context(K8sSQL(url, "--name", "watched", *options))
        writer = watched if mode == "one server" else stack.enter_context(K8sSQL(url, "--name", "writer", *options))
        if mode == "peer signals":
            writer.wait_for_output("sending commit signals to watched")
        watching = stack.enter_context(EtcdClient(watched.endpoint))
        writing = stack.enter_context(EtcdClient(writer.endpoint))
        session = WatchSession(watching)
        session.create(PREFIX, range_end=PREFIX[:-1] + b"0")
        assert session.next().created
        arrived: dict[int, float] = {}
        done = threading.Event()

        def receive() -> None:
            while len(arrived) < args.writes:
                for event in session.next().events:
                    arrived[int(event.kv.value[:8])] = time.monotonic()
            done.set()

        threading.Thread(target=receive, daemon=True).start()
        value = b"x" * args.value_size
        sent: dict[int, float] = {}
        revisions: list[int] = []
        answers = []
        start = time.monotonic()
        for number in range(args.writes):
            time.sleep(max(0.0, start + number / args.rate - time.monotonic()))
            sent[number] = time.monotonic()
            request = rpc_pb2.PutRequest(key=PREFIX + b"%d" % number, value=b"%08d" % number + value)
            answers.append(writing.KV.Put.future(request, timeout=10))
        revisions = [answer.result().header.revision for answer in answers]
        if not done.wait(float(args.poll_interval.rstrip("s")) * 2 + 10):
            raise RuntimeError(f"only {len(arrived)} of {args.writes} events arrived")
        session.half_close()
        session.responses.cancel()
    assert revisions == sorted(revisions)
    return sorted(arrived[number] - sent[number] for number in range(args.writes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", action="append", help="sqlite, or a mysql:// or postgres:// URL (repeatable; default sqlite)")
    parser.add_argument("--writes", type=int, default=100, help="Puts per run (default 100)")
    parser.add_argument("--rate", type=float, default=20.0, help="Puts per second (default 20)")
    parser.add_argument("--value-size", type=int, default=256, help="bytes per value (default 256)")
    parser.add_argument("--poll-interval", default="1s", help="the servers' --poll-interval, in seconds (default 1s)")
    parser.add_argument("--mode", dest="modes", action="append", choices=MODES, help="only these modes (repeatable)")
    args = parser.parse_args()
    rows = ["| backend | how | events | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="k8s-sql-bench-") as scratch:
        for backend in args.backend or ["sqlite"]:
            for mode in args.modes or MODES:
                with scratch_database(backend, scratch) as url:
                    latencies = measure(url, mode, args)
                how = mode + (" (NOTIFY)" if mode == "polling" and backend_name(backend) == "postgres" else "")
                row = (
                    f"| {backend_name(backend)} | {how} | {len(latencies)} | {quantile(latencies, 0.5):.1f} "
                    f"| {quantile(latencies, 0.99):.1f} | {latencies[-1] * 1000:.1f} |"
                )
                print(row, flush=True)
                rows.append(row)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
