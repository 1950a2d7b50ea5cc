"""One robustness run: servers, traffic, faults, then the checks.

``run(backend, duration)`` starts the servers (``cluster``), the clients and watches
(``traffic``) and a fault injector that, between quiet spells, SIGKILLs and restarts a
server, pauses one with SIGSTOP/SIGCONT, and on MariaDB/PostgreSQL restarts the database
(every connection cut and new ones refused for a while), cuts its connections, or kills
the second of the two servers sharing it.  Then it heals everything, reads the final
state, waits for the log watch to reach it, checks the history (``checker``) and returns
the figures, the server's RSS over time included.
"""

from __future__ import annotations

import pickle
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import grpc

from k8s_sql.proto import rpc_pb2
from tests.conftest import ReactorThread
from tests.etcdclient import EtcdClient
from tests.robustness.checker import check
from tests.robustness.cluster import Cluster
from tests.robustness.history import History
from tests.robustness.traffic import EtcdLikeClient, KubernetesLikeClient, Watcher

#: The faults, and the backends each applies to.
FAULTS = {
    "kill": ("sqlite", "mysql", "postgres"),
    "pause": ("sqlite", "mysql", "postgres"),
    "database-restart": ("mysql", "postgres"),
    "database-cut": ("mysql", "postgres"),
    "kill-second-server": ("mysql", "postgres"),
}


@dataclass
class Result:
    """What a run did and found."""

    backend: str
    seconds: float
    counts: dict[str, int]
    violations: list[str]
    faults: dict[str, int]
    #: (seconds since start, pid, RSS bytes) of the first server, every few seconds.
    rss: list[tuple[float, int, int]] = field(default_factory=list)
    log_lines: int = 0
    warnings: int = 0


class FaultInjector(threading.Thread):
    """Injects one fault at a time, with quiet spells of ``quiet`` seconds between them."""

    def __init__(self, cluster: Cluster, faults: list[str], stop: threading.Event, seed: int, quiet: float) -> None:
        super().__init__(name="faults", daemon=True)
        self.cluster = cluster
        self.faults = faults
        self.stopping = stop
        self.random = random.Random(seed)
        self.quiet = quiet
        self.injected: dict[str, int] = {name: 0 for name in faults}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            order: list[str] = []
            while not self.stopping.wait(self.random.uniform(self.quiet, 2 * self.quiet)):
                if not order:  # every fault once, in a new order each round
                    order = self.random.sample(self.faults, len(self.faults))
                fault = order.pop()
                self.inject(fault)
                self.injected[fault] += 1
        except BaseException as error:  # reported by the run
            self.error = error

    def inject(self, fault: str) -> None:
        cluster, pause = self.cluster, self.random.uniform(0.5, 3.0)
        if fault == "kill":
            cluster.kill(0)
            cluster.start(0)
        elif fault == "kill-second-server":
            cluster.kill(1)
            time.sleep(pause)  # the second server stays down a while
            cluster.start(1)
        elif fault == "pause":
            cluster.pause(0, True)
            time.sleep(pause)
            cluster.pause(0, False)
        elif fault == "database-restart":
            cluster.database_outage(True)
            time.sleep(pause)
            cluster.database_outage(False)
        elif fault == "database-cut":
            cluster.database_outage(True)
            cluster.database_outage(False)


def run(
    backend: str,
    duration: float,
    *,
    seed: int = 1,
    faults: list[str] | None = None,
    quiet: float = 3.0,
    reactor: ReactorThread | None = None,
    progress: Any = None,
    keep: str | None = None,
    pace: float = 1.0,
) -> Result:
    """One run of ``duration`` seconds on ``backend``; ``faults`` defaults to all that apply.

    ``keep`` names a file to pickle the history and the servers' output into when a check fails;
    ``pace`` stretches the clients' pauses between operations (2: about half the load).
    """
    faults = [f for f in (faults or list(FAULTS)) if backend in FAULTS[f]]
    own_reactor = reactor is None
    reactor = reactor or ReactorThread()
    history = History()
    stop, stop_watches = threading.Event(), threading.Event()
    started = time.monotonic()
    try:
        with Cluster(backend, reactor) as cluster:
            endpoints = cluster.endpoints
            log_watch = Watcher(0, endpoints[0], history, stop_watches, b"\0", b"\0", 1, log=True)
            watchers = [log_watch] + [
                Watcher(
                    100 + i, endpoints[i % len(endpoints)], history, stop_watches,
                    KubernetesLikeClient.PREFIX, b"/registry/pods0", 1, progress_every=1.0,
                )
                for i in range(2)
            ]
            clients: list[Any] = [
                EtcdLikeClient(i + 1, endpoints[i % len(endpoints)], history, stop, seed * 100 + i, pace) for i in range(3)
            ]
            clients += [
                KubernetesLikeClient(
                    10 + i, endpoints[i % len(endpoints)], history, stop, seed * 100 + 10 + i, pace,
                    compacts_below=(lambda: log_watch.revision) if i == 0 else None,
                )
                for i in range(2)
            ]
            injector = FaultInjector(cluster, faults, stop, seed, quiet)
            rss: list[tuple[float, int, int]] = []
            for thread in (*watchers, *clients, injector):
                thread.start()
            while (elapsed := time.monotonic() - started) < duration and injector.is_alive():
                sample = cluster.rss(0)
                if sample:
                    rss.append((round(elapsed, 1), *sample))
                if progress:
                    progress(f"{backend}: {elapsed:.0f}/{duration:.0f} s, {len(history.operations)} operations")
                stop.wait(min(5.0, max(0.1, duration - elapsed)))
            stop.set()
            injector.join()
            if injector.error is not None:
                raise injector.error
            for client in clients:
                client.join()
            history.final = final_read(endpoints[0])
            deadline = time.monotonic() + 60
            while log_watch.revision < history.final.header.revision and time.monotonic() < deadline:
                time.sleep(0.1)
            stop_watches.set()
            for watcher in watchers:
                watcher.close()
                watcher.join()
            output = cluster.output()
        report = check(history)
        if keep and report.violations:
            with open(keep, "wb") as file:
                pickle.dump((history, output), file)
        return Result(
            backend,
            round(time.monotonic() - started, 1),
            dict(report.counts),
            report.violations,
            injector.injected,
            rss,
            output.count("\n"),
            sum(marker in line for line in output.splitlines() for marker in ("#warn]", "#error]", "#critical]")),
        )
    finally:
        stop.set()
        stop_watches.set()
        if own_reactor:
            reactor.stop()


def final_read(endpoint: str) -> rpc_pb2.RangeResponse:
    """Every key, once the server answers again."""
    deadline = time.monotonic() + 60
    with EtcdClient(endpoint) as client:
        while True:
            try:
                return client.KV.Range(rpc_pb2.RangeRequest(key=b"\0", range_end=b"\0"), timeout=5)
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
