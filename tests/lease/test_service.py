"""The etcd Lease service over an in-memory lease store, with time on a ``task.Clock``."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, fail
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from k8s_sql.etcd import errors
from k8s_sql.etcd.header import Identity
from k8s_sql.etcd.lease import DEFAULT_MIN_TTL, LeaseService
from k8s_sql.etcd.services import register
from k8s_sql.grpc.interfaces import IServerCall
from k8s_sql.grpc.registry import CallKind, MethodRegistry
from k8s_sql.grpc.status import GRPCError
from k8s_sql.proto import rpc_pb2
from k8s_sql.store.errors import Unavailable
from tests.lease.doubles import MemoryLeaseStore, ScriptedCall

T = TypeVar("T")
IDENTITY = Identity(cluster_id=11, member_id=22)


class Harness:
    """A LeaseService on a fresh store, the clock at 1000 s."""

    def __init__(self, min_ttl: int = DEFAULT_MIN_TTL) -> None:
        self.store = MemoryLeaseStore()
        self.clock = Clock()
        self.clock.advance(1000)
        self.service = LeaseService(self.store, IDENTITY, self.clock, min_ttl=min_ttl)
        self.call = ScriptedCall()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """The result of a handler that finishes at once; store failures in etcd's words,
        as registration translates them (``k8s_sql.etcd.services``)."""
        results: list[Any] = []
        ensureDeferred(coroutine).addBoth(results.append)
        [result] = results
        if isinstance(result, Failure):
            raise errors.translate(result.value) or result.value
        return result

    def grant(self, ttl: int, lease_id: int = 0) -> rpc_pb2.LeaseGrantResponse:
        return self.run(self.service.lease_grant(rpc_pb2.LeaseGrantRequest(TTL=ttl, ID=lease_id), self.call))

    def time_to_live(self, lease_id: int, keys: bool = False) -> rpc_pb2.LeaseTimeToLiveResponse:
        return self.run(self.service.lease_time_to_live(rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id, keys=keys), self.call))

    def revoke(self, lease_id: int) -> rpc_pb2.LeaseRevokeResponse:
        return self.run(self.service.lease_revoke(rpc_pb2.LeaseRevokeRequest(ID=lease_id), self.call))


def assert_etcd_error(error: GRPCError, expected: errors.EtcdError) -> None:
    assert (error.code, error.message) == (expected.code, expected.message)


@pytest.fixture
def harness() -> Harness:
    return Harness()


# --- registration ------------------------------------------------------------------------


def test_registers_the_five_lease_methods(harness: Harness) -> None:
    registry = MethodRegistry()
    register(registry, harness.service)
    kinds = {
        name: registry.lookup(f"/etcdserverpb.Lease/{name}").kind
        for name in ("LeaseGrant", "LeaseRevoke", "LeaseTimeToLive", "LeaseLeases", "LeaseKeepAlive")
    }
    assert kinds == {
        "LeaseGrant": CallKind.UNARY,
        "LeaseRevoke": CallKind.UNARY,
        "LeaseTimeToLive": CallKind.UNARY,
        "LeaseLeases": CallKind.UNARY,
        "LeaseKeepAlive": CallKind.BIDI,
    }
    method = registry.lookup("/etcdserverpb.Lease/LeaseKeepAlive")
    deserialize, serialize = method.deserialize, method.serialize
    assert deserialize(rpc_pb2.LeaseKeepAliveRequest(ID=5).SerializeToString()).ID == 5
    assert rpc_pb2.LeaseKeepAliveResponse.FromString(serialize(rpc_pb2.LeaseKeepAliveResponse(TTL=3))).TTL == 3


def test_refuses_a_minimum_ttl_below_one_second() -> None:
    with pytest.raises(ValueError):
        LeaseService(MemoryLeaseStore(), IDENTITY, Clock(), min_ttl=0)


# --- grant --------------------------------------------------------------------------------


def test_grant_with_id_zero_picks_a_positive_id(harness: Harness) -> None:
    response = harness.grant(60)
    assert response.ID > 0 and response.TTL == 60
    assert harness.store.rows[response.ID].deadline == 1060
    assert response.header == IDENTITY.header(1)


def test_grant_with_an_explicit_id(harness: Harness) -> None:
    assert harness.grant(10, lease_id=0x1234).ID == 0x1234


@pytest.mark.parametrize("requested", [-5, 0, 1])
def test_grant_raises_short_ttls_to_the_minimum(harness: Harness, requested: int) -> None:
    response = harness.grant(requested)
    assert response.TTL == DEFAULT_MIN_TTL == 2
    assert harness.store.rows[response.ID].granted_ttl == 2


def test_the_minimum_ttl_is_configurable() -> None:
    harness = Harness(min_ttl=10)
    assert harness.grant(3).TTL == 10
    assert harness.grant(11).TTL == 11


def test_grant_of_an_existing_id_fails(harness: Harness) -> None:
    harness.grant(10, lease_id=7)
    with pytest.raises(GRPCError) as caught:
        harness.grant(10, lease_id=7)
    assert_etcd_error(caught.value, errors.LEASE_EXISTS)


def test_grant_of_a_too_large_ttl_fails(harness: Harness) -> None:
    assert harness.grant(9_000_000_000).TTL == 9_000_000_000
    with pytest.raises(GRPCError) as caught:
        harness.grant(9_000_000_001)
    assert_etcd_error(caught.value, errors.LEASE_TTL_TOO_LARGE)


# --- revoke -------------------------------------------------------------------------------


def test_revoke_deletes_the_keys_in_one_revision(harness: Harness) -> None:
    harness.grant(10, lease_id=7)
    harness.store.attach(b"k2", 7)
    harness.store.attach(b"k1", 7)
    response = harness.revoke(7)
    assert response.header == IDENTITY.header(4)
    assert harness.store.deleted == [(4, b"k1"), (4, b"k2")]
    assert harness.store.rows == {}


def test_revoke_of_an_unknown_lease_fails(harness: Harness) -> None:
    with pytest.raises(GRPCError) as caught:
        harness.revoke(404)
    assert_etcd_error(caught.value, errors.LEASE_NOT_FOUND)


# --- time to live -------------------------------------------------------------------------


def test_time_to_live_reports_remaining_and_granted(harness: Harness) -> None:
    harness.grant(10, lease_id=7)
    harness.store.attach(b"k", 7)
    harness.clock.advance(3.5)
    response = harness.time_to_live(7)
    assert (response.ID, response.TTL, response.grantedTTL, list(response.keys)) == (7, 6, 10, [])
    assert response.header == IDENTITY.header(2)
    assert list(harness.time_to_live(7, keys=True).keys) == [b"k"]


def test_time_to_live_of_an_unknown_lease_is_minus_one(harness: Harness) -> None:
    response = harness.time_to_live(404, keys=True)
    assert response == rpc_pb2.LeaseTimeToLiveResponse(header=IDENTITY.header(1), ID=404, TTL=-1)


# --- leases -------------------------------------------------------------------------------


def test_leases_lists_every_id(harness: Harness) -> None:
    for lease_id in (3, 1, 2):
        harness.grant(10, lease_id=lease_id)
    response = harness.run(harness.service.lease_leases(rpc_pb2.LeaseLeasesRequest(), harness.call))
    assert sorted(status.ID for status in response.leases) == [1, 2, 3]
    assert response.header == IDENTITY.header(1)


# --- keep-alive ---------------------------------------------------------------------------


def keep_alive(harness: Harness) -> Deferred[None]:
    assert verifyObject(IServerCall, harness.call)
    return ensureDeferred(harness.service.lease_keep_alive(harness.call))


def test_keep_alive_answers_each_request_and_renews_from_now(harness: Harness) -> None:
    harness.grant(10, lease_id=7)
    done = keep_alive(harness)
    harness.clock.advance(8)
    harness.call.client_sends(rpc_pb2.LeaseKeepAliveRequest(ID=7))
    harness.call.client_sends(rpc_pb2.LeaseKeepAliveRequest(ID=404))
    assert harness.call.sent == [
        rpc_pb2.LeaseKeepAliveResponse(header=IDENTITY.header(1), ID=7, TTL=10),
        rpc_pb2.LeaseKeepAliveResponse(header=IDENTITY.header(1), ID=404, TTL=0),
    ]
    assert harness.store.rows[7].deadline == 1018
    assert not done.called


def test_keep_alive_ends_with_ok_when_the_client_half_closes(harness: Harness) -> None:
    done = keep_alive(harness)
    harness.call.client_sends(rpc_pb2.LeaseKeepAliveRequest(ID=1))
    harness.call.client_sends(None)
    assert done.called and done.result is None
    assert len(harness.call.sent) == 1


def test_keep_alive_takes_the_header_before_renewing(harness: Harness) -> None:
    done = keep_alive(harness)
    harness.call.client_sends(rpc_pb2.LeaseKeepAliveRequest(ID=1))
    assert harness.store.calls == ["current_revision", "lease_renew"]
    harness.call.client_sends(None)
    assert done.called


def test_keep_alive_waits_for_the_client_to_take_each_answer(harness: Harness) -> None:
    harness.call.flowing = False
    done = keep_alive(harness)
    harness.call.client_sends(rpc_pb2.LeaseKeepAliveRequest(ID=1))
    harness.call.client_sends(rpc_pb2.LeaseKeepAliveRequest(ID=2))
    assert len(harness.call.sent) == 1
    harness.call.blocked.pop().callback(None)
    assert len(harness.call.sent) == 2
    harness.call.blocked.pop().callback(None)
    harness.call.client_sends(None)
    assert done.called


def test_keep_alive_cancelled_while_waiting_for_a_request_holds_nothing(harness: Harness) -> None:
    done = keep_alive(harness)
    assert harness.call.waiting is not None
    done.cancel()
    assert harness.call.waiting is None
    assert isinstance(done.result, Failure) and done.result.check(CancelledError)
    done.addErrback(lambda _: None)


def test_keep_alive_cancelled_while_blocked_on_the_client_holds_nothing(harness: Harness) -> None:
    harness.call.flowing = False
    done = keep_alive(harness)
    harness.call.client_sends(rpc_pb2.LeaseKeepAliveRequest(ID=1))
    [window] = harness.call.blocked
    done.cancel()
    assert window.called
    assert done.result.check(CancelledError)
    done.addErrback(lambda _: None)


def test_store_failures_use_etcds_words(harness: Harness) -> None:
    def unavailable(*args: object) -> Deferred[int]:
        return fail(Unavailable("database gone"))

    harness.store.lease_renew = unavailable  # type: ignore[method-assign]
    registry = MethodRegistry()
    register(registry, harness.service)
    method = registry.lookup("/etcdserverpb.Lease/LeaseKeepAlive")
    done = ensureDeferred(method.handler(harness.call))
    harness.call.client_sends(rpc_pb2.LeaseKeepAliveRequest(ID=1))
    error = done.result.value
    done.addErrback(lambda _: None)
    assert method.translate_error is not None
    assert_etcd_error(method.translate_error(error), errors.REQUEST_TIMED_OUT)
