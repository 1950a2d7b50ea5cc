"""Commit signals between the servers sharing a database: who sends, who listens.

After each of its own commits a server tells its live peers the revision over a
connection to each (``PeerSignals``, one ``PeerLink`` per peer process); a peer takes
it (``SignalListener``) into its store's commit signals (``CommitSignals.peer``), which
wake its follower.  Many
commits in one reactor turn become one signal, of the newest revision.  Connections are
authenticated by the database's peer secret and signals signed (``k8s_sql.cluster.wire``);
the listener also refuses a sender that is not a live member.

A signal only wakes: what was committed, and in which order, is read from the log.  A
lost signal (a peer unreachable, restarting, its connection being made) delays an event
by at most the poll interval, and a repeated or stale one costs a read of the log that
finds nothing new.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import ensureDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from k8s_sql.cluster.endpoints import describe_address
from k8s_sql.cluster.wire import ADMITTED, NONCE_BYTES, Admitted, Answer, Hello, ListeningEnd, Refused, SendingEnd
from k8s_sql.store.interfaces import IClusterStore
from k8s_sql.store.model import MemberRecord

#: Seconds a peer has, once connected, to say who it is.
HELLO_TIMEOUT = 10.0
#: Seconds before a failed connection to a peer is tried again: doubled after each failure up to the maximum.
FIRST_RETRY = 0.1
MAX_RETRY = 5.0

#: ``lookup(instance)``: the live member process ``instance``, or ``None``.
Lookup = Callable[[int], Any]


def _no_delay(transport: Any) -> None:
    """Send each signal at once: small writes must not wait for the previous one's acknowledgement."""
    set_no_delay = getattr(transport, "setTcpNoDelay", None)
    if set_no_delay is not None:
        set_no_delay(True)


class SignalReceiver(Protocol):
    """One connection from a peer: the challenge, its hello, then its signals."""

    transport: Any

    def __init__(self, listener: SignalListener) -> None:
        self.listener = listener
        self._end = ListeningEnd(listener.store.peer_secret, secrets.token_bytes(NONCE_BYTES))
        self._admitted = False
        self._waiting: list[int] = []
        self._timeout: IDelayedCall | None = None
        self._peer = ""

    def connectionMade(self) -> None:
        """Send the challenge; give the peer ``HELLO_TIMEOUT`` to answer it."""
        self._peer = describe_address(self.transport.getPeer())
        _no_delay(self.transport)
        self.transport.write(self._end.challenge)
        self._timeout = self.listener.clock.callLater(HELLO_TIMEOUT, self._refuse, "no hello in time")

    def dataReceived(self, data: bytes) -> None:
        """Check the hello and the signals; pass the signals on once the sender is admitted."""
        try:
            events = self._end.receive(data)
        except Refused as refused:
            self._refuse(str(refused))
            return
        for event in events:
            if isinstance(event, Hello):
                ensureDeferred(self._admit(event.instance))
            elif self._admitted:
                self.listener.committed(event.revision)
            else:
                self._waiting.append(event.revision)

    async def _admit(self, instance: int) -> None:
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        try:
            member = await self.listener.lookup(instance)
        except Exception as error:  # a database outage, which the store reports
            self._refuse(f"cannot read the member registry: {error}", LogLevel.info)
            return
        if member is None:
            self._refuse(f"instance {instance:x} is not a live member")
            return
        if not self.connected:
            return
        self._admitted = True
        self.transport.write(ADMITTED)
        self.listener.log.info(
            "taking commit signals from {name} ({instance:x}) at {address}",
            name=member.name,
            instance=instance,
            address=self._peer,
        )
        waiting, self._waiting = self._waiting, []
        if waiting:
            self.listener.committed(max(waiting))

    def _refuse(self, reason: str, level: LogLevel = LogLevel.warn) -> None:
        if self.connected:
            self.listener.log.emit(
                level, "refused commit signals from {address}: {reason}", address=self._peer, reason=reason
            )
            self.transport.abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Forget the hello's timer."""
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()


class SignalListener(Factory):
    """Takes commit signals from peers into ``committed`` (the store's commit signals).

    @param store: where the peer secret comes from.
    @param clock: times the hello.
    @param lookup: ``async lookup(instance)``: the live member process, or ``None``.
    @param committed: told each revision a peer signals.
    """

    log = Logger()
    protocol = SignalReceiver
    noisy = False

    def __init__(
        self, store: IClusterStore, clock: IReactorTime, lookup: Lookup, committed: Callable[[int], None]
    ) -> None:
        self.store = store
        self.clock = clock
        self.lookup = lookup
        self.committed = committed

    def buildProtocol(self, addr: Any) -> SignalReceiver:
        """A receiver for one connection."""
        return SignalReceiver(self)


class SignalSender(Protocol):
    """One connection to a peer: answers the challenge, then carries signals."""

    transport: Any

    def __init__(self, link: PeerLink) -> None:
        self.link = link
        signals = link.signals
        self._end = SendingEnd(signals.store.peer_secret, signals.instance, secrets.token_bytes(NONCE_BYTES))

    def connectionMade(self) -> None:
        """Send each signal as soon as it is written."""
        _no_delay(self.transport)

    def dataReceived(self, data: bytes) -> None:
        """Answer the challenge with the hello (the link may signal from then on); hear the admission."""
        try:
            events = self._end.receive(data)
        except Refused as refused:
            self.link.signals.log.warn("peer {url}: {reason}", url=self.link.url, reason=str(refused))
            self.transport.abortConnection()
            return
        for event in events:
            if isinstance(event, Answer):
                self.transport.write(event.hello)
                self.link.ready(self)
            elif isinstance(event, Admitted):
                self.link.admitted()

    def send(self, revision: int) -> None:
        """Signal ``revision``."""
        self.transport.write(self._end.signal(revision))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Tell the link."""
        self.link.lost(self, reason)


class _SenderFactory(Factory):
    noisy = False

    def __init__(self, link: PeerLink) -> None:
        self.link = link

    def buildProtocol(self, addr: Any) -> SignalSender:
        return SignalSender(self.link)


class PeerLink:
    """The connection to one peer process, made again after it fails, while the peer is live.

    Signals made while it is not connected are not kept, except the newest, which the
    link sends once connected.
    """

    def __init__(self, signals: PeerSignals, member: MemberRecord) -> None:
        self.signals = signals
        self.member = member
        self.url = member.peer_urls[0]
        self._url_index = 0
        self._sender: SignalSender | None = None
        self._connecting: Any = None
        self._retry: IDelayedCall | None = None
        self._delay = FIRST_RETRY
        self._sent = 0
        self._stopped = False
        self._was_connected = False

    def start(self) -> None:
        """Connect."""
        endpoint: IStreamClientEndpoint = self.signals.endpoint(self.url)
        self._connecting = endpoint.connect(_SenderFactory(self))
        self._connecting.addErrback(self._failed)

    def ready(self, sender: SignalSender) -> None:
        """The hello is sent: signal the newest revision, and each new one."""
        self._connecting = None
        self._sender = sender
        self.signal(self.signals.newest)

    def admitted(self) -> None:
        """The peer takes this server's signals."""
        self._delay = FIRST_RETRY
        self._was_connected = True
        self.signals.log.info(
            "sending commit signals to {name} ({instance:x}) at {url}",
            name=self.member.name,
            instance=self.member.instance,
            url=self.url,
        )

    def signal(self, revision: int) -> None:
        """Send ``revision`` if connected and it is new to this peer."""
        if self._sender is not None and revision > self._sent:
            self._sent = revision
            self._sender.send(revision)

    def lost(self, sender: SignalSender, reason: Failure) -> None:
        """The connection ended: make it again later, unless stopped."""
        if self._sender is sender:
            self._sender = None
            self._sent = 0
        self._connecting = None
        if not self._stopped:
            if self._was_connected:
                self.signals.log.info(
                    "lost the connection to {name} at {url}: {reason}",
                    name=self.member.name,
                    url=self.url,
                    reason=reason.getErrorMessage(),
                )
            else:
                self.signals.log.debug(
                    "the connection to {name} at {url} ended before it took this server's signals: {reason}",
                    name=self.member.name,
                    url=self.url,
                    reason=reason.getErrorMessage(),
                )
            self._was_connected = False
            self._later()

    def _failed(self, failure: Failure) -> None:
        self._connecting = None
        if not self._stopped:
            self.signals.log.debug("cannot reach {url}: {reason}", url=self.url, reason=failure.getErrorMessage())
            self._url_index = (self._url_index + 1) % len(self.member.peer_urls)
            self.url = self.member.peer_urls[self._url_index]
            self._later()

    def _later(self) -> None:
        if self._retry is None or not self._retry.active():
            self._retry = self.signals.clock.callLater(self._delay, self.start)
            self._delay = min(self._delay * 2, MAX_RETRY)

    def stop(self) -> None:
        """Close the connection and make no other."""
        self._stopped = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        if self._connecting is not None:
            self._connecting.cancel()
        if self._sender is not None and self._sender.transport is not None:
            self._sender.transport.abortConnection()


class PeerSignals(Service):
    """Sends this server's commits to every live process of the other servers with a peer URL.

    Processes registered with this server's own name are left out: its worker processes
    hear its commits from their supervisor (``k8s_sql.workers``), and an earlier run of
    it has stopped.

    @param store: whose local commits to send, and the peer secret.
    @param clock: schedules the sending and reconnections.
    @param instance: this process's instance in the member registry.
    @param name: this server's name.
    @param endpoint: the endpoint reaching a peer URL.
    """

    log = Logger()

    def __init__(
        self,
        store: IClusterStore,
        clock: IReactorTime,
        instance: int,
        name: str,
        endpoint: Callable[[str], IStreamClientEndpoint],
    ) -> None:
        self.store = store
        self.clock = clock
        self.instance = instance
        self.member_name = name
        self.endpoint = endpoint
        #: The newest revision this store committed.
        self.newest = 0
        self.links: dict[int, PeerLink] = {}
        self._members: Sequence[MemberRecord] = ()
        self._unsubscribe: Callable[[], None] | None = None
        self._sending: IDelayedCall | None = None

    def startService(self) -> None:
        """Hear this store's commits; connect to the peers known."""
        super().startService()
        self._unsubscribe = self.store.notify_local_commits(self.committed)
        self.members_changed(self._members)

    def stopService(self) -> None:
        """Stop hearing commits; close every link."""
        super().stopService()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._sending is not None and self._sending.active():
            self._sending.cancel()
        links, self.links = self.links, {}
        for link in links.values():
            link.stop()

    def committed(self, revision: int) -> None:
        """This store committed ``revision``: signal the peers in this reactor turn's end."""
        self.newest = max(self.newest, revision)
        if self._sending is None or not self._sending.active():
            self._sending = self.clock.callLater(0, self._send)

    def _send(self) -> None:
        for link in self.links.values():
            link.signal(self.newest)

    def members_changed(self, members: Sequence[MemberRecord]) -> None:
        """Link to each live process of another server with a peer URL, and to no other."""
        self._members = members
        if not self.running:
            return
        wanted = {member.instance: member for member in members if member.name != self.member_name and member.peer_urls}
        for instance in list(self.links):
            if instance not in wanted or wanted[instance].peer_urls != self.links[instance].member.peer_urls:
                self.links.pop(instance).stop()
        for instance, member in wanted.items():
            if instance not in self.links:
                link = self.links[instance] = PeerLink(self, member)
                link.start()
