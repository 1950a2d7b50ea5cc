"""This server process's row in the member registry, its heartbeat, and the view of the live members.

Every server process on a database registers a row (``k8s_sql.store.members``) once it
listens: its name, member ID, client URLs and peer URLs.  It moves the row's deadline
``timeout`` ahead every fifth of ``timeout`` (the heartbeat), reading the live rows as it
does, and deletes the row when it stops.  A process that stopped beating (killed, cut off
from the database) drops out of the live members once its deadline passes.

A name belongs to one server.  Processes of one server (its worker processes, on one
host, sharing its client port) share it; a server starting with a name that another live
server holds waits to see whether that one beats: if it does, the start fails with
``NameTaken``; if its row expires, or the process that held it is found gone (an earlier
run of this server, on this host), the name is taken over.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger

from k8s_sql.cluster.process import ProcessPlace, running
from k8s_sql.staged import StartingService
from k8s_sql.store.errors import NameInUse, Unavailable
from k8s_sql.store.interfaces import IClusterStore
from k8s_sql.store.model import MemberRecord

#: Seconds after its last heartbeat a server process drops out of the live members.
DEFAULT_TIMEOUT = 10.0
#: Heartbeats per ``timeout``.
BEATS_PER_TIMEOUT = 5
#: Seconds a stopping server waits for its row's deletion before it stops anyway.
DEREGISTER_TIMEOUT = 5.0

#: ``observer(members)``: the live members changed.
MembersObserver = Callable[[Sequence[MemberRecord]], None]


class NameTaken(Exception):
    """Another live server holds this server's name; the message says which."""


class MemberRegistry(StartingService):
    """Registers this server process on start, beats while running, deregisters on stop.

    @param store: the database's registry.
    @param clock: the time deadlines are kept in, and the heartbeat's timer.
    @param instance: this run of this process, its row's key.
    @param name: this server's name (``--name``).
    @param member_id: this server's member ID, known once the store is open.
    @param client_urls: the client URLs this server advertises, known once it listens.
    @param peer_urls: where this process takes commit signals from its peers.
    @param timeout: seconds after its last beat this process drops out.
    @param place: where this process runs, for taking over the name of a stopped run.
    """

    log = Logger()

    def __init__(
        self,
        store: IClusterStore,
        clock: IReactorTime,
        instance: int,
        name: str,
        member_id: Callable[[], int],
        client_urls: Callable[[], Sequence[str]],
        peer_urls: Callable[[], Sequence[str]],
        timeout: float = DEFAULT_TIMEOUT,
        place: ProcessPlace | None = None,
    ) -> None:
        super().__init__()
        self.store = store
        self.clock = clock
        self.instance = instance
        self.member_name = name
        self.member_id = member_id
        self.client_urls = client_urls
        self.peer_urls = peer_urls
        self.timeout = timeout
        self.place = place or ProcessPlace.here()
        self._record: MemberRecord | None = None
        #: The live members as last read, this process among them once registered.
        self.members: tuple[MemberRecord, ...] = ()
        self._observers: list[MembersObserver] = []
        self._beat: LoopingCall | None = None
        #: Fires once the heartbeat has stopped and no beat is under way.
        self._beaten: Deferred[Any] = succeed(None)
        self._refreshing: list[Deferred[None]] | None = None

    @property
    def interval(self) -> float:
        """Seconds between heartbeats."""
        return self.timeout / BEATS_PER_TIMEOUT

    def record(self) -> MemberRecord:
        """This process's row as it would be registered now, without a deadline."""
        place = self.place
        return MemberRecord(
            self.instance,
            self.member_name,
            self.member_id(),
            tuple(self.client_urls()),
            tuple(self.peer_urls()),
            place.host,
            place.pid_space,
            place.pid,
        )

    def observe(self, observer: MembersObserver) -> Callable[[], None]:
        """Call ``observer(members)`` whenever the live members change; returns the unsubscriber."""
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)

    async def lookup(self, instance: int) -> MemberRecord | None:
        """The live member process ``instance``, reading the registry again if it is not in the view."""
        for member in self.members:
            if member.instance == instance:
                return member
        await self.refresh()
        return next((member for member in self.members if member.instance == instance), None)

    async def refresh(self) -> None:
        """Read the live members now; calls made meanwhile share the read."""
        if self._refreshing is not None:
            waiter: Deferred[None] = Deferred()
            self._refreshing.append(waiter)
            await waiter
            return
        self._refreshing = []
        try:
            self._update(await self.store.live_members(self.clock.seconds()))
        finally:
            waiting, self._refreshing = self._refreshing, None
            for waiter in waiting:
                waiter.callback(None)

    def begin(self) -> Deferred[MemberRecord]:
        """Register, taking the name over from stopped processes, or waiting to see who holds it."""
        return ensureDeferred(self._register())

    def begun(self, record: MemberRecord) -> None:
        """Beat from now on."""
        self._record = record
        self.log.info(
            "registered as member {name} ({member_id:x}), instance {instance:x}; peer URLs: {peer_urls}",
            name=record.name,
            member_id=record.member_id,
            instance=record.instance,
            peer_urls=", ".join(record.peer_urls) or "none",
        )
        self._beat = LoopingCall(self.beat)
        self._beat.clock = self.clock
        self._beaten = self._beat.start(self.interval, now=False)

    def end(self) -> Deferred[None]:
        """Stop beating and delete this process's row (waiting ``DEREGISTER_TIMEOUT`` at most)."""
        beat, self._beat = self._beat, None
        beaten: Deferred[Any] = succeed(None)
        if beat is not None and beat.running:
            beaten = self._beaten
            beat.stop()
        ending = Deferred.fromCoroutine(self._leave(beaten))
        ending.addTimeout(DEREGISTER_TIMEOUT, self.clock)
        ending.addErrback(
            lambda failure: self.log.warn(
                "could not leave the member registry ({error}); this server drops out of it in {timeout} s",
                error=failure.getErrorMessage(),
                timeout=self.timeout,
            )
        )
        return ending

    async def _leave(self, beaten: Deferred[Any]) -> None:
        await beaten  # a beat under way would write the row again after its deletion
        record, self._record = self._record, None
        if record is not None:
            await self.store.deregister_member(record.instance)
            self.log.info("left the member registry")

    async def beat(self) -> None:
        """Move this process's deadline ahead and read the live members; failures are logged
        (a database outage by the store, once)."""
        record = self._record
        if record is None:
            return
        now = self.clock.seconds()
        record = self._record = dataclasses.replace(record, deadline=now + self.timeout)
        try:
            members, gone = await self.store.renew_member(record, now, now - self.timeout)
        except Unavailable:
            return  # the store reports the outage once
        except Exception:
            self.log.failure("Heartbeat failed; beating again in {interval} s", interval=self.interval)
            return
        if gone:
            self.log.info("this server's registration had expired (it could not beat): registered again")
        self._update(members)

    async def _register(self) -> MemberRecord:
        record = self.record()
        replace: list[int] = []
        seen: dict[int, float] = {}
        while True:
            now = self.clock.seconds()
            record = dataclasses.replace(record, deadline=now + self.timeout)
            try:
                members = await self.store.register_member(record, now, replace)
            except NameInUse as in_use:
                replace = self._settle(record, in_use.holders, seen)
                if not replace:
                    await deferLater(self.clock, self.interval)
                continue
            self._update(members)
            return record

    def _settle(self, record: MemberRecord, holders: Sequence[MemberRecord], seen: dict[int, float]) -> list[int]:
        """Decide about the live holders of ``record``'s name: those whose process is gone
        are replaced (returned); one seen beating fails the start; the others are waited for."""
        gone = [
            holder.instance
            for holder in holders
            if holder.pid_space and holder.pid_space == self.place.pid_space and not running(holder.pid)
        ]
        if len(gone) == len(holders):
            self.log.info("taking over the name {name} from a process that stopped", name=record.name)
            return gone
        for holder in holders:
            if holder.instance in gone:
                continue
            if holder.deadline > seen.setdefault(holder.instance, holder.deadline):
                raise NameTaken(
                    f"another server is running as member {record.name!r} (host {holder.host}, process "
                    f"{holder.pid}, client URLs {', '.join(holder.client_urls) or 'none'}): give each server "
                    "sharing the database its own --name"
                )
            self.log.warn(
                "member name {name} is held by host {host}, process {pid}: waiting up to {wait:.1f} s to see "
                "whether it still runs",
                name=record.name,
                host=holder.host,
                pid=holder.pid,
                wait=max(holder.deadline - self.clock.seconds(), 0.0),
            )
        return []

    def _update(self, members: Sequence[MemberRecord]) -> None:
        before = {member.instance: member for member in self.members}
        self.members = tuple(members)
        after = {member.instance: member for member in self.members}
        if before == after:
            return
        for instance, member in after.items():
            if instance not in before and instance != self.instance and before:
                self.log.info("{name} ({instance:x}) joined", name=member.name, instance=instance)
        for instance, member in before.items():
            if instance not in after and instance != self.instance:
                self.log.info("{name} ({instance:x}) left", name=member.name, instance=instance)
        for observer in list(self._observers):
            try:
                observer(self.members)
            except Exception:
                self.log.failure("members observer {observer!r} failed", observer=observer)
