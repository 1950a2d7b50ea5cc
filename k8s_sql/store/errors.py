"""Failures the store reports, by meaning; ``k8s_sql.etcd.errors`` maps them to etcd's texts."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every failure the store reports on purpose."""


class InvalidRequest(StoreError):
    """A request etcd would refuse before executing it (see the subclasses)."""


class EmptyKey(InvalidRequest):
    """A request without a key ("key is not provided")."""


class InvalidSortOption(InvalidRequest):
    """An unknown sort order or target."""


class TooManyOperations(InvalidRequest):
    """A transaction with more operations in one branch than the store allows."""


class DuplicateKey(InvalidRequest):
    """A transaction branch that writes one key twice, or puts a key it also deletes."""


class RequestTooLarge(InvalidRequest):
    """A request larger than the store accepts."""


class ValueProvided(InvalidRequest):
    """A put with ``ignore_value`` that also carries a value."""


class LeaseProvided(InvalidRequest):
    """A put with ``ignore_lease`` that also carries a lease."""


class KeyNotFound(StoreError):
    """A put with ``ignore_value`` or ``ignore_lease`` on a key that does not exist."""


class Compacted(StoreError):
    """The revision asked for has been compacted away; ``compact_revision`` says how far."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(compact_revision)
        self.compact_revision = compact_revision


class FutureRevision(StoreError):
    """The revision asked for is greater than the current revision."""


class LeaseNotFound(StoreError):
    """The lease named does not exist."""


class LeaseExists(StoreError):
    """A grant asked for an ID that is already in use."""


class LeaseTTLTooLarge(StoreError):
    """A grant asked for a TTL beyond the maximum."""


class Unavailable(StoreError):
    """The database cannot be reached or failed; the request may be retried."""


class SchemaTooNew(StoreError):
    """The database was created by a newer k8s-sql; this version refuses to touch it."""


class NotEmpty(StoreError):
    """A snapshot load into a store that already holds keys or leases."""


class InvalidLoad(StoreError):
    """Records a snapshot load cannot take: keys out of order, revisions beyond the snapshot's."""


class NameInUse(StoreError):
    """A server registering with a name that live processes of another server hold.

    ``holders`` are their ``MemberRecord`` rows.
    """

    def __init__(self, holders: tuple) -> None:
        super().__init__(holders)
        self.holders = holders
