"""etcd's error texts and codes, and the one table mapping store failures onto them.

clientv3 recognises errors by their exact ``grpc-message``, so every text here is etcd's,
byte for byte (../shared/etcd-contract.md section 3).
"""

from __future__ import annotations

from typing import NamedTuple

from k8s_sql.grpc.status import GRPCError, StatusCode
from k8s_sql.store import errors as store_errors


class EtcdError(NamedTuple):
    """One of etcd's errors: its gRPC code and exact message."""

    code: StatusCode
    message: str

    def exception(self) -> GRPCError:
        """A fresh exception that ends the call with this error."""
        return GRPCError(self.code, self.message)


EMPTY_KEY = EtcdError(StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided")
KEY_NOT_FOUND = EtcdError(StatusCode.INVALID_ARGUMENT, "etcdserver: key not found")
VALUE_PROVIDED = EtcdError(StatusCode.INVALID_ARGUMENT, "etcdserver: value is provided")
LEASE_PROVIDED = EtcdError(StatusCode.INVALID_ARGUMENT, "etcdserver: lease is provided")
TOO_MANY_OPS = EtcdError(StatusCode.INVALID_ARGUMENT, "etcdserver: too many operations in txn request")
DUPLICATE_KEY = EtcdError(StatusCode.INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request")
INVALID_SORT_OPTION = EtcdError(StatusCode.INVALID_ARGUMENT, "etcdserver: invalid sort option")
REQUEST_TOO_LARGE = EtcdError(StatusCode.INVALID_ARGUMENT, "etcdserver: request is too large")
COMPACTED = EtcdError(StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted")
FUTURE_REVISION = EtcdError(StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision")
LEASE_TTL_TOO_LARGE = EtcdError(StatusCode.OUT_OF_RANGE, "etcdserver: too large lease TTL")
LEASE_NOT_FOUND = EtcdError(StatusCode.NOT_FOUND, "etcdserver: requested lease not found")
MEMBER_NOT_FOUND = EtcdError(StatusCode.NOT_FOUND, "etcdserver: member not found")
BAD_LEADER_TRANSFEREE = EtcdError(StatusCode.FAILED_PRECONDITION, "etcdserver: bad leader transferee")
MEMBER_NOT_LEARNER = EtcdError(StatusCode.FAILED_PRECONDITION, "etcdserver: can only promote a learner member")
NO_INFLIGHT_DOWNGRADE = EtcdError(StatusCode.FAILED_PRECONDITION, "etcdserver: no inflight downgrade job")
INVALID_DOWNGRADE_TARGET = EtcdError(StatusCode.INVALID_ARGUMENT, "etcdserver: invalid downgrade target version")
WRONG_DOWNGRADE_VERSION_FORMAT = EtcdError(
    StatusCode.INVALID_ARGUMENT, "etcdserver: wrong downgrade target version format"
)
LEASE_EXISTS = EtcdError(StatusCode.FAILED_PRECONDITION, "etcdserver: lease already exists")
NOT_CAPABLE = EtcdError(StatusCode.FAILED_PRECONDITION, "etcdserver: not capable")
AUTH_NOT_ENABLED = EtcdError(StatusCode.FAILED_PRECONDITION, "etcdserver: authentication is not enabled")
TOO_MANY_REQUESTS = EtcdError(StatusCode.RESOURCE_EXHAUSTED, "etcdserver: too many requests")
REQUEST_TIMED_OUT = EtcdError(StatusCode.UNAVAILABLE, "etcdserver: request timed out")
SERVER_STOPPED = EtcdError(StatusCode.UNAVAILABLE, "etcdserver: server stopped")

_BY_STORE_ERROR: dict[type[store_errors.StoreError], EtcdError] = {
    store_errors.EmptyKey: EMPTY_KEY,
    store_errors.KeyNotFound: KEY_NOT_FOUND,
    store_errors.ValueProvided: VALUE_PROVIDED,
    store_errors.LeaseProvided: LEASE_PROVIDED,
    store_errors.TooManyOperations: TOO_MANY_OPS,
    store_errors.DuplicateKey: DUPLICATE_KEY,
    store_errors.InvalidSortOption: INVALID_SORT_OPTION,
    store_errors.RequestTooLarge: REQUEST_TOO_LARGE,
    store_errors.Compacted: COMPACTED,
    store_errors.FutureRevision: FUTURE_REVISION,
    store_errors.LeaseTTLTooLarge: LEASE_TTL_TOO_LARGE,
    store_errors.LeaseNotFound: LEASE_NOT_FOUND,
    store_errors.LeaseExists: LEASE_EXISTS,
    store_errors.Unavailable: REQUEST_TIMED_OUT,
}


def translate(error: BaseException) -> GRPCError | None:
    """The status a handler's failure ends its call with: etcd's for a store failure, else
    ``None`` (an unexpected failure)."""
    return to_grpc_error(error) if isinstance(error, store_errors.StoreError) else None


def to_grpc_error(failure: store_errors.StoreError) -> GRPCError:
    """The etcd error a store failure is reported as.

    An unavailable database is reported as etcd reports a request it could not complete,
    ``UNAVAILABLE``, which clients retry.
    """
    for kind in type(failure).__mro__:
        if kind in _BY_STORE_ERROR:
            return _BY_STORE_ERROR[kind].exception()
    return GRPCError(StatusCode.INTERNAL, f"etcdserver: {failure}")
