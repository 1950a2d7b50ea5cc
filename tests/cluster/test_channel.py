"""The peer channel over real loopback connections between two stores on one database, every backend.

A commit through one store reaches the other's commit signals over the channel, with no
polling; with peer TLS, peers verify each other's certificates.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Iterator

import pytest
from twisted.internet.defer import Deferred
from twisted.logger import capturedLogs, globalLogPublisher
from zope.interface.verify import verifyObject

from k8s_sql.cluster.endpoints import PeerTLS, peer_endpoint, peer_url
from k8s_sql.cluster.peers import PeerSignals, SignalListener
from k8s_sql.grpc.tls import server_endpoint
from k8s_sql.staged import IStagedService, ListeningService
from k8s_sql.store import open_store
from k8s_sql.store.model import MemberRecord, PutRequest
from tests.grpc.support import Certificates

Run = Callable[..., Any]
FOREVER = 1e12


class Peer:
    """A store with a peer listener and a sender, registered as instance ``instance``."""

    def __init__(self, run: Run, reactor: Any, url: str, instance: int, listen: Any, tls: PeerTLS, secure: bool) -> None:
        self.run = run
        self.instance = instance
        self.store = run(open_store, url, reactor)
        self.woken: list[int | None] = []
        self.waiting: list[tuple[int, Deferred[None]]] = []
        self.store.notify_commits(self._woken)
        listener = SignalListener(self.store, reactor, self.lookup, self.store.signals.peer)
        self.listening = ListeningService("peer", listen, listener)
        run(self.listening.startService)
        run(self.listening.whenStarted)
        self.url = peer_url(self.listening.port.getHost(), secure)
        self.record = MemberRecord(instance, f"server-{instance}", instance, (), (self.url,), "h", "s", instance, FOREVER)
        run(self.store.register_member, self.record, 0.0)
        self.signals = PeerSignals(
            self.store, reactor, instance, f"server-{instance}", partial(peer_endpoint, reactor, tls=tls)
        )
        run(self.signals.startService)

    async def lookup(self, instance: int) -> MemberRecord | None:
        return next((m for m in await self.store.live_members(0.0) if m.instance == instance), None)

    def _woken(self, revision: int | None) -> None:
        self.woken.append(revision)
        for wanted, waiter in list(self.waiting):
            if revision is not None and revision >= wanted:
                self.waiting.remove((wanted, waiter))
                waiter.callback(None)

    def woken_at(self, revision: int) -> Deferred[None]:
        """Fires once a signal says ``revision`` is committed."""
        waiter: Deferred[None] = Deferred()
        if any(woken is not None and woken >= revision for woken in self.woken):
            waiter.callback(None)
        else:
            self.waiting.append((revision, waiter))
        return waiter

    def close(self) -> None:
        self.run(self.signals.stopService)
        self.run(self.listening.stopService)
        self.run(self.store.close)


@pytest.fixture
def pair(run: Run, reactor: Any, backend: str) -> Iterator[Callable[..., tuple[Peer, Peer]]]:
    made: list[Peer] = []

    def make(listen: Callable[[], Any] | None = None, tls: PeerTLS = PeerTLS(), secure: bool = False) -> tuple[Peer, Peer]:
        def endpoint() -> Any:
            return listen() if listen else server_endpoint(reactor, "tcp:0:interface=127.0.0.1")

        for instance in (1, 2):
            made.append(Peer(run, reactor, backend, instance, endpoint(), tls, secure))
        first, second = made
        for peer in made:
            run(peer.signals.members_changed, [first.record, second.record])
        return first, second

    yield make
    for peer in made:
        peer.close()


def test_a_commit_through_one_store_wakes_the_other(run: Run, pair: Any) -> None:
    first, second = pair()
    assert verifyObject(IStagedService, first.listening)
    revision = run(first.store.put, PutRequest(b"k", b"v")).revision
    run(second.woken_at, revision, timeout=5)
    assert second.woken == [revision]  # no poll: the peer's signal, once
    revision = run(second.store.put, PutRequest(b"k", b"w")).revision
    run(first.woken_at, revision, timeout=5)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_peers_with_tls_verify_each_other(run: Run, reactor: Any, pair: Any, certificates: Certificates) -> None:
    files = certificates.path("peer.pem"), certificates.path("peer.key"), certificates.path("ca.pem")

    def listen() -> Any:
        return server_endpoint(
            reactor,
            "tcp:0:interface=127.0.0.1",
            cert_file=files[0],
            key_file=files[1],
            trusted_ca_file=files[2],
            client_cert_auth=True,
        )

    first, second = pair(listen, PeerTLS.from_files(*files), secure=True)
    assert first.url.startswith("https://127.0.0.1:")
    revision = run(first.store.put, PutRequest(b"k", b"v")).revision
    run(second.woken_at, revision, timeout=5)

    stranger = PeerSignals(
        first.store,
        reactor,
        first.instance,
        "stranger",
        partial(peer_endpoint, reactor, tls=PeerTLS.from_files(
            certificates.path("stranger.pem"), certificates.path("stranger.key"), files[2]
        )),
    )
    ended: Deferred[None] = Deferred()

    def observe(event: dict) -> None:
        if event.get("log_source") is stranger and "ended before" in event["log_format"] and not ended.called:
            reactor.callFromThread(ended.callback, None)

    with capturedLogs() as events:
        globalLogPublisher.addObserver(observe)
        try:
            run(stranger.startService)
            run(stranger.members_changed, [second.record])
            run(lambda: ended, timeout=5)  # the TLS handshake fails: the connection ends
        finally:
            globalLogPublisher.removeObserver(observe)
    run(stranger.stopService)
    assert not any(e.get("log_source") is stranger and "sending" in e["log_format"] for e in events)
