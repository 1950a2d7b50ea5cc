"""The clients of a robustness run, each a thread with its own grpcio channel.

etcd-like clients put, delete, compare-and-swap, read (now and at past revisions) and use
leases on a small key space; Kubernetes-like clients update by mod_revision compares, list
in pages pinned to a revision, watch with prev_kv and progress requests, and compact through
the compact_rev_key Txn.  The log watch follows every key from revision 1.  Every value
written is unique, so that a write whose outcome is unknown can be found in the log.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from k8s_sql.proto import rpc_pb2
from tests.etcdclient import EtcdClient
from tests.robustness.history import History, Operation, WatchStream

#: How long a unary call may take; a fault outlasting it leaves the outcome unknown.
TIMEOUT = 3.0
COMPACT_REV_KEY = b"compact_rev_key"
Compare = rpc_pb2.Compare


def op(request: Any) -> rpc_pb2.RequestOp:
    """A request as a Txn operation."""
    field = {
        rpc_pb2.PutRequest: "request_put",
        rpc_pb2.RangeRequest: "request_range",
        rpc_pb2.DeleteRangeRequest: "request_delete_range",
    }[type(request)]
    return rpc_pb2.RequestOp(**{field: request})


def mod_is(key: bytes, revision: int) -> rpc_pb2.Compare:
    """MOD(key) == revision."""
    return Compare(key=key, target=Compare.MOD, result=Compare.EQUAL, mod_revision=revision)


def prefix_end(prefix: bytes) -> bytes:
    """The range_end of a prefix (prefixes here end below 0xff)."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


class Client(threading.Thread):
    """A thread that records every call it makes into the history."""

    #: Pause between operations: uniform between these bounds (seconds), times ``pace``.
    PAUSE = (0.005, 0.02)

    def __init__(
        self, number: int, endpoint: str, history: History, stop: threading.Event, seed: int, pace: float = 1.0
    ) -> None:
        super().__init__(name=f"client-{number}", daemon=True)
        self.pace = pace
        self.number = number
        self.etcd = EtcdClient(endpoint)
        self.history = history
        self.stopping = stop
        self.random = random.Random(seed)
        self._sequence = 0

    def value(self) -> bytes:
        """A value no other write uses."""
        self._sequence += 1
        return b"c%d-%d" % (self.number, self._sequence)

    def call(self, service: str, method: str, request: Any) -> Operation:
        """Make one call and record it."""
        operation = Operation(self.number, method, request, time.monotonic())
        self.history.operations.append(operation)
        try:
            operation.response = getattr(getattr(self.etcd, service), method)(request, timeout=TIMEOUT)
        except grpc.RpcError as error:
            operation.error = error.code().name
        operation.returned = time.monotonic()
        return operation

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                self.step()
                self.stopping.wait(self.random.uniform(*self.PAUSE) * self.pace)
        finally:
            self.etcd.close()

    def step(self) -> None:
        """One operation (or one short sequence of them)."""
        raise NotImplementedError


class EtcdLikeClient(Client):
    """Puts, deletes, compare-and-swaps, reads and leases on /e/ and /l/."""

    KEYS = [b"/e/k%d" % i for i in range(10)]

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.leases: list[int] = []
        self.seen: dict[bytes, int] = {}
        self.revision = 1

    def step(self) -> None:
        choice = self.random.random()
        key = self.random.choice(self.KEYS)
        if choice < 0.3:
            self.call("KV", "Put", rpc_pb2.PutRequest(key=key, value=self.value(), prev_kv=self.random.random() < 0.5))
        elif choice < 0.4:
            self.call("KV", "DeleteRange", rpc_pb2.DeleteRangeRequest(key=key, prev_kv=True))
        elif choice < 0.6:
            other = self.random.choice(self.KEYS)
            success = [op(rpc_pb2.PutRequest(key=key, value=self.value()))]
            if other != key:
                success.append(op(rpc_pb2.PutRequest(key=other, value=self.value())))
            request = rpc_pb2.TxnRequest(
                compare=[mod_is(key, self.seen.get(key, 0))], success=success, failure=[op(rpc_pb2.RangeRequest(key=key))]
            )
            self.call("KV", "Txn", request)
        elif choice < 0.75:
            read = self.call("KV", "Range", rpc_pb2.RangeRequest(key=b"/e/", range_end=b"/e0"))
            if read.response is not None:
                self.revision = read.response.header.revision
                self.seen = {kv.key: kv.mod_revision for kv in read.response.kvs}
        elif choice < 0.85:
            at = self.random.randint(max(1, self.revision - 50), self.revision)
            self.call("KV", "Range", rpc_pb2.RangeRequest(key=b"/e/", range_end=b"/e0", revision=at))
        elif choice < 0.9:
            lease = self.number * 1_000_000 + self._sequence
            self._sequence += 1
            grant = self.call("Lease", "LeaseGrant", rpc_pb2.LeaseGrantRequest(ID=lease, TTL=self.random.choice((2, 3, 60))))
            if grant.response is not None:
                self.leases.append(lease)
        elif choice < 0.95 and self.leases:
            lease = self.random.choice(self.leases)
            key = b"/l/c%d-%d" % (self.number, self.random.randrange(4))
            self.call("KV", "Put", rpc_pb2.PutRequest(key=key, value=self.value(), lease=lease))
        elif self.leases:
            lease = self.leases.pop(self.random.randrange(len(self.leases)))
            self.call("Lease", "LeaseRevoke", rpc_pb2.LeaseRevokeRequest(ID=lease))


class KubernetesLikeClient(Client):
    """Optimistic updates and deletes of /registry/pods/, paginated lists, and (one of them)
    compaction as kube-apiserver's compactor does it."""

    PREFIX = b"/registry/pods/"
    KEYS = [b"/registry/pods/p%02d" % i for i in range(15)]

    def __init__(self, *args: Any, compacts_below: Callable[[], int] | None = None) -> None:
        super().__init__(*args)
        self.compacts_below = compacts_below
        self.compacted = 0
        self._next_compaction = time.monotonic() + 3

    def step(self) -> None:
        if self.compacts_below is not None and time.monotonic() >= self._next_compaction:
            self._next_compaction = time.monotonic() + 3
            self.compact()
            return
        choice = self.random.random()
        if choice < 0.25:
            self.list()
            return
        key = self.random.choice(self.KEYS)
        read = self.call("KV", "Range", rpc_pb2.RangeRequest(key=key))
        if read.response is None:
            return
        mod = read.response.kvs[0].mod_revision if read.response.kvs else 0
        change: Any = rpc_pb2.PutRequest(key=key, value=self.value())
        if mod and choice > 0.8:
            change = rpc_pb2.DeleteRangeRequest(key=key)
        self.call("KV", "Txn", rpc_pb2.TxnRequest(
            compare=[mod_is(key, mod)], success=[op(change)], failure=[op(rpc_pb2.RangeRequest(key=key))]
        ))

    def list(self) -> None:
        """A list in pages of 4, pinned to the first page's revision."""
        request = rpc_pb2.RangeRequest(key=self.PREFIX, range_end=prefix_end(self.PREFIX), limit=4)
        while True:
            page = self.call("KV", "Range", request)
            if page.response is None or not page.response.more:
                return
            request = rpc_pb2.RangeRequest(
                key=page.response.kvs[-1].key + b"\0",
                range_end=request.range_end,
                limit=4,
                revision=request.revision or page.response.header.revision,
            )

    def compact(self) -> None:
        """kube-apiserver's compaction: claim compact_rev_key by its version, then Compact."""
        assert self.compacts_below is not None
        read = self.call("KV", "Range", rpc_pb2.RangeRequest(key=COMPACT_REV_KEY))
        if read.response is None:
            return
        version = read.response.kvs[0].version if read.response.kvs else 0
        target = min(self.compacts_below(), read.response.header.revision - 20)
        if target <= self.compacted:
            return
        claim = self.call("KV", "Txn", rpc_pb2.TxnRequest(
            compare=[Compare(key=COMPACT_REV_KEY, target=Compare.VERSION, result=Compare.EQUAL, version=version)],
            success=[op(rpc_pb2.PutRequest(key=COMPACT_REV_KEY, value=b"compact-%d" % target))],
            failure=[op(rpc_pb2.RangeRequest(key=COMPACT_REV_KEY))],
        ))
        if claim.response is not None and claim.response.succeeded:
            if self.call("KV", "Compact", rpc_pb2.CompactionRequest(revision=target)).response is not None:
                self.compacted = target


class Watcher(threading.Thread):
    """A watch kept open through faults: each break is resumed by a new watch from the
    revision after the last one received (events or progress), each creation recorded as
    a WatchStream.  ``progress_every`` sends WatchProgressRequests at that interval."""

    def __init__(
        self,
        number: int,
        endpoint: str,
        history: History,
        stop: threading.Event,
        key: bytes,
        range_end: bytes,
        start: int,
        *,
        log: bool = False,
        progress_every: float | None = None,
    ) -> None:
        super().__init__(name=f"watcher-{number}", daemon=True)
        self.number = number
        self.etcd = EtcdClient(endpoint)
        self.history = history
        self.stopping = stop
        self.key, self.range_end, self.next = key, range_end, start
        self.log = log
        self.progress_every = progress_every
        #: The last revision whose events this watcher has received.
        self.revision = start - 1
        self._call: Any = None

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                self.watch_once()
                self.stopping.wait(0.2)
        finally:
            self.etcd.close()

    def watch_once(self) -> None:
        request = rpc_pb2.WatchCreateRequest(
            key=self.key, range_end=self.range_end, start_revision=self.next, prev_kv=True,
            progress_notify=self.progress_every is not None,
        )
        stream = WatchStream(self.number, request, log=self.log)
        self.history.watches.append(stream)
        requests: queue.Queue[rpc_pb2.WatchRequest | None] = queue.Queue()
        requests.put(rpc_pb2.WatchRequest(create_request=request))
        self._call = self.etcd.Watch.Watch(_drain(requests))
        ticker = threading.Thread(target=self._progress, args=(requests, stream), daemon=True)
        ticker.start()
        try:
            for response in self._call:
                stream.responses.append((time.monotonic(), response))
                if response.compact_revision:
                    self.next = response.compact_revision
                    return
                if response.events:
                    self.revision = response.events[-1].kv.mod_revision
                elif not response.created and not response.canceled:
                    self.revision = max(self.revision, response.header.revision)
                self.next = self.revision + 1
                if response.canceled:
                    return
        except grpc.RpcError:
            pass
        finally:
            requests.put(None)

    def _progress(self, requests: queue.Queue, stream: WatchStream) -> None:
        if self.progress_every is None:
            return
        call = self._call
        while not self.stopping.wait(self.progress_every) and call is self._call:
            stream.progress_requests.append(time.monotonic())
            requests.put(rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest()))

    def close(self) -> None:
        """End the current watch (the thread ends once ``stop`` is set)."""
        if self._call is not None:
            self._call.cancel()


def _drain(requests: queue.Queue) -> Iterator[Any]:
    while (request := requests.get()) is not None:
        yield request
