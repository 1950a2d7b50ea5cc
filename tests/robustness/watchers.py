"""Memory held by a server after many watchers leave: ``python -m tests.robustness.watchers``.

Starts k8s-sql on a fresh SQLite database, opens ``--watchers`` watch streams (over 20
connections, each watch on its own key, each created and answered), writes one key each
watch sees, closes the connections, and prints the server's RSS at each step, three times
over, so that what the first round leaves behind shows apart from what is reused.
"""

from __future__ import annotations

import argparse
import queue
import tempfile
import time
from typing import Any

from k8s_sql.proto import rpc_pb2
from tests.etcdclient import EtcdClient
from tests.processes import K8sSQL


def rss(server: K8sSQL) -> int:
    """The server's resident set size, in bytes."""
    with open(f"/proc/{server.process.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def open_watches(endpoint: str, count: int, connections: int = 20) -> tuple[list[EtcdClient], list[Any]]:
    """``count`` watches on /w/<n>, each confirmed created."""
    clients = [EtcdClient(endpoint, **{"grpc.use_local_subchannel_pool": 1}) for _ in range(connections)]
    calls = []
    for index in range(count):
        requests: queue.Queue = queue.Queue()
        requests.put(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"/w/%d" % index, prev_kv=True)))
        call = clients[index % connections].Watch.Watch(iter(requests.get, None))
        calls.append((call, requests))
    for call, _ in calls:
        assert next(call).created
    return clients, calls


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.robustness.watchers", description=__doc__)
    parser.add_argument("--watchers", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-events", action="store_true", help="open and close the watches only")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory, K8sSQL(f"sqlite:///{directory}/db") as server:
        with EtcdClient(server.endpoint) as writer:
            writer.KV.Put(rpc_pb2.PutRequest(key=b"/w/warm-up", value=b"x"), timeout=10)
            time.sleep(2)
            print(f"idle: {rss(server) >> 10} KiB", flush=True)
            for round_ in range(1, options.rounds + 1):
                clients, calls = open_watches(server.endpoint, options.watchers)
                print(f"round {round_}: {options.watchers} watchers open: {rss(server) >> 10} KiB", flush=True)
                if not options.no_events:
                    for index in range(options.watchers):
                        writer.KV.Put(rpc_pb2.PutRequest(key=b"/w/%d" % index, value=b"v" * 100), timeout=10)
                    for call, _ in calls:
                        assert next(call).events
                    print(f"round {round_}: one event each delivered: {rss(server) >> 10} KiB", flush=True)
                for client in clients:
                    client.close()
                time.sleep(5)
                print(f"round {round_}: all gone (5 s later): {rss(server) >> 10} KiB", flush=True)
                for call, requests in calls:
                    requests.put(None)


if __name__ == "__main__":
    main()
