"""Test doubles of the lease layer's collaborators: an in-memory ``ILeaseStore`` with
etcd's lease rules, a scripted ``IServerCall`` and a recording ``IMethodRegistry``.

The store keeps leases, the keys attached to them and a revision counter, so that tests can
check what the service reports and what expiry deletes.  ``hold`` and ``fail_next`` let a
test control when and how ``expire_leases`` answers.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from k8s_sql.grpc.interfaces import IServerCall
from k8s_sql.store import errors
from k8s_sql.store.interfaces import ILeaseStore
from k8s_sql.store.model import Lease, LeaseTimeToLive

MAX_TTL = 9_000_000_000


@implementer(ILeaseStore)
class MemoryLeaseStore:
    """Leases and their keys in dictionaries; every answer is an already-fired Deferred,
    except ``expire_leases`` while ``hold`` is set."""

    def __init__(self, seed: int = 0) -> None:
        self.revision = 1
        self.rows: dict[int, Lease] = {}
        self.keys: dict[bytes, int] = {}
        self.random = random.Random(seed)
        #: Keys deleted by revocation, in order, with the revision that deleted them.
        self.deleted: list[tuple[int, bytes]] = []
        #: While true, ``expire_leases`` answers with pending Deferreds kept in ``held``.
        self.hold = False
        self.held: list[tuple[Deferred[list[int]], float, int]] = []
        #: Errors the next calls of ``expire_leases`` fail with, first one first.
        self.fail_next: list[Exception] = []
        self.expire_calls: list[tuple[float, int]] = []
        #: The names of the ILeaseStore methods called, in order.
        self.calls: list[str] = []

    # --- helpers for tests ------------------------------------------------------------

    def attach(self, key: bytes, lease_id: int) -> None:
        """Put ``key`` with ``lease_id``, as a Put with a lease would (one revision)."""
        if lease_id not in self.rows:
            raise errors.LeaseNotFound()
        self.revision += 1
        self.keys[key] = lease_id

    def release(self, now: float | None = None) -> None:
        """Answer the oldest held ``expire_leases`` call, at ``now`` or at its own time."""
        waiter, asked_at, limit = self.held.pop(0)
        waiter.callback(self._expire(asked_at if now is None else now, limit))

    # --- ILeaseStore --------------------------------------------------------------------

    def current_revision(self) -> Deferred[int]:
        self.calls.append("current_revision")
        return succeed(self.revision)

    def lease_grant(self, lease_id: int, ttl: int, now: float) -> Deferred[Lease]:
        self.calls.append("lease_grant")
        if ttl > MAX_TTL:
            return fail(errors.LeaseTTLTooLarge())
        while lease_id == 0:
            candidate = self.random.getrandbits(63)
            lease_id = 0 if candidate in self.rows else candidate
        if lease_id in self.rows:
            return fail(errors.LeaseExists())
        lease = self.rows[lease_id] = Lease(lease_id, ttl, now + ttl)
        return succeed(lease)

    def lease_revoke(self, lease_id: int) -> Deferred[int]:
        self.calls.append("lease_revoke")
        if lease_id not in self.rows:
            return fail(errors.LeaseNotFound())
        self._revoke(lease_id)
        return succeed(self.revision)

    def lease_renew(self, lease_id: int, now: float) -> Deferred[int]:
        self.calls.append("lease_renew")
        lease = self.rows.get(lease_id)
        if lease is None or lease.deadline < now:
            return succeed(0)
        self.rows[lease_id] = Lease(lease_id, lease.granted_ttl, now + lease.granted_ttl)
        return succeed(lease.granted_ttl)

    def lease_time_to_live(self, lease_id: int, keys: bool, now: float) -> Deferred[LeaseTimeToLive]:
        self.calls.append("lease_time_to_live")
        lease = self.rows.get(lease_id)
        if lease is None or lease.deadline < now:
            return succeed(LeaseTimeToLive(lease_id, -1))
        attached = tuple(sorted(k for k, owner in self.keys.items() if owner == lease_id)) if keys else ()
        return succeed(LeaseTimeToLive(lease_id, int(lease.deadline - now), lease.granted_ttl, attached))

    def leases(self) -> Deferred[list[int]]:
        self.calls.append("leases")
        return succeed(list(self.rows))

    def expire_leases(self, now: float, limit: int) -> Deferred[list[int]]:
        self.calls.append("expire_leases")
        self.expire_calls.append((now, limit))
        if self.fail_next:
            return fail(self.fail_next.pop(0))
        if self.hold:
            waiter: Deferred[list[int]] = Deferred()
            self.held.append((waiter, now, limit))
            return waiter
        return succeed(self._expire(now, limit))

    # --- internals ----------------------------------------------------------------------

    def _expire(self, now: float, limit: int) -> list[int]:
        due = sorted((lease for lease in self.rows.values() if lease.deadline < now), key=lambda l: l.deadline)
        expired = [lease.id for lease in due[:limit]]
        for lease_id in expired:
            self._revoke(lease_id)
        return expired

    def _revoke(self, lease_id: int) -> None:
        del self.rows[lease_id]
        doomed = sorted(k for k, owner in self.keys.items() if owner == lease_id)
        if doomed:
            self.revision += 1
        for key in doomed:
            del self.keys[key]
            self.deleted.append((self.revision, key))


@implementer(IServerCall)
class ScriptedCall:
    """One streaming call driven by the test: it queues what the client sends and holds
    what the handler sends until the test lets it through."""

    method = "/etcdserverpb.Lease/LeaseKeepAlive"
    metadata: tuple[tuple[str, str | bytes], ...] = ()
    peer = IPv4Address("TCP", "127.0.0.1", 40000)
    deadline = None

    def __init__(self, flowing: bool = True) -> None:
        self.incoming: list[Any] = []
        self.waiting: Deferred[Any] | None = None
        self.sent: list[Any] = []
        #: While false, ``send`` answers with pending Deferreds kept in ``blocked``.
        self.flowing = flowing
        self.blocked: list[Deferred[None]] = []
        self.trailers: list[tuple[str, str | bytes]] = []

    def client_sends(self, message: Any) -> None:
        """Deliver a request message (``None``: the client half-closes)."""
        if self.waiting is not None:
            waiting, self.waiting = self.waiting, None
            waiting.callback(message)
        else:
            self.incoming.append(message)

    def receive(self) -> Deferred[Any]:
        if self.incoming:
            return succeed(self.incoming.pop(0))
        self.waiting = Deferred(lambda _: self._forget())
        return self.waiting

    def _forget(self) -> None:
        self.waiting = None

    def send(self, message: Any) -> Deferred[None]:
        self.sent.append(message)
        if self.flowing:
            return succeed(None)
        window: Deferred[None] = Deferred()
        self.blocked.append(window)
        return window

    def set_trailing_metadata(self, metadata: Any) -> None:
        self.trailers.extend(metadata)
