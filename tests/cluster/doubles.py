"""Stand-ins for the peer channel's tests: a store's cluster side, endpoints the test connects by hand."""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from k8s_sql.cluster.wire import ListeningEnd
from k8s_sql.store.model import MemberRecord

SECRET = b"k" * 32


class Store:
    """The peer secret and the local commit subscription of a store."""

    peer_secret = SECRET

    def __init__(self) -> None:
        self.local: list[Callable[[int], None]] = []

    def notify_local_commits(self, observer: Callable[[int], None]) -> Callable[[], None]:
        self.local.append(observer)
        return lambda: self.local.remove(observer)

    def commit(self, revision: int) -> None:
        for observer in list(self.local):
            observer(revision)


def member(instance: int, *urls: str, name: str = "") -> MemberRecord:
    """A live registry row with peer ``urls``, of the server ``server-<instance>`` unless named."""
    name = name or f"server-{instance}"
    return MemberRecord(instance, name, instance, ("http://127.0.0.1:1",), tuple(urls), "h", "s", instance, 1e12)


class Attempt:
    """A connection attempt of a link, which the test answers as the peer would."""

    def __init__(self, url: str, factory: IProtocolFactory) -> None:
        self.url = url
        self.factory = factory
        self.connecting: Deferred[Any] = Deferred()
        self.transport = StringTransport()
        self.protocol: Any = None
        self.peer = ListeningEnd(SECRET, b"c" * 16)
        self.events: list[Any] = []

    def accept(self, admit: bool = True) -> None:
        """Connect, challenge, take the hello and, with ``admit``, admit the sender."""
        self.protocol = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 2380))
        self.protocol.makeConnection(self.transport)
        self.connecting.callback(self.protocol)
        self.protocol.dataReceived(self.peer.challenge)
        self.read()
        if admit:
            self.protocol.dataReceived(b"\x01")

    def read(self) -> list[Any]:
        """What the sender sent since last read, as the peer's events."""
        data = self.transport.value()
        self.transport.clear()
        events = self.peer.receive(data)
        self.events.extend(events)
        return events


class Endpoints:
    """``endpoint(url)`` for links: every connection attempt is kept for the test to answer."""

    def __init__(self) -> None:
        self.attempts: list[Attempt] = []

    def __call__(self, url: str) -> IStreamClientEndpoint:
        attempts = self.attempts

        @implementer(IStreamClientEndpoint)
        class Endpoint:
            def connect(self, factory: IProtocolFactory) -> Deferred[Any]:
                attempt = Attempt(url, factory)
                attempts.append(attempt)
                return attempt.connecting

        return Endpoint()


class Registry:
    """The member registry of a database in memory, as ``k8s_sql.store.members`` keeps it; ``fail``
    makes the next calls fail."""

    def __init__(self) -> None:
        self.rows: dict[int, MemberRecord] = {}
        self.fail: Exception | None = None

    def _check(self) -> None:
        if self.fail is not None:
            raise self.fail

    def live(self, now: float) -> list[MemberRecord]:
        return sorted((row for row in self.rows.values() if row.deadline >= now), key=lambda r: (r.name, r.instance))

    async def register_member(self, record: MemberRecord, now: float, replace: Any = ()) -> list[MemberRecord]:
        from k8s_sql.store.errors import NameInUse

        self._check()
        rows = {instance: row for instance, row in self.rows.items() if instance not in (*replace, record.instance)}
        holders = tuple(
            row for row in rows.values()
            if row.deadline >= now and row.name == record.name and not record.same_server(row)
        )
        if holders:
            raise NameInUse(holders)
        self.rows = {**rows, record.instance: record}
        return self.live(now)

    async def renew_member(
        self, record: MemberRecord, now: float, forget_before: float
    ) -> tuple[list[MemberRecord], bool]:
        self._check()
        gone = record.instance not in self.rows
        self.rows[record.instance] = record
        self.rows = {instance: row for instance, row in self.rows.items() if row.deadline >= forget_before}
        return self.live(now), gone

    async def deregister_member(self, instance: int) -> None:
        self._check()
        self.rows.pop(instance, None)

    async def live_members(self, now: float) -> list[MemberRecord]:
        self._check()
        return self.live(now)
